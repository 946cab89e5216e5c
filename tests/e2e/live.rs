//! G-4 in a browser: the demo dashboard's live page opens a WebSocket through the
//! gateway (`wss://…/live/ws`) and shows the numbers it receives.

use std::time::{Duration, Instant};

use crate::browser::{Browser, require_browser};
use crate::flows::submit_password;
use crate::helpers::CAROL_PASSWORD;
use crate::{DemoGateway, EN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g4_a_live_websocket_page_keeps_counting_through_the_gateway() {
    require_browser!();
    let demo = DemoGateway::start().await;
    let b = Browser::open(EN.accept, 1280, 800).await;
    b.goto(demo.url("/")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    submit_password(&b, "carol", CAROL_PASSWORD).await;
    b.wait_path("/").await;
    assert_eq!(b.text_of("remote-user").await, "carol");

    b.by_id("live-link").await.click().await.unwrap();
    b.wait_path("/live").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = b.text_of("counter").await;
        if shown.parse::<u64>().is_ok_and(|n| n >= 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the counter shows {shown:?}, WebSocket {}",
            b.text_of("state").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.text_of("state").await, "open");
    // The page's script came from the upstream through the gateway, not inline.
    let inline: usize = b
        .js("return Array.from(document.scripts).filter(s => !s.src).length")
        .await;
    assert_eq!(inline, 0);
    b.close().await;
}
