//! Templates (minijinja, embedded at build time) and the static files of the screens.

use minijinja::{Environment, Value};

pub const STYLESHEET: &str = include_str!("../static/kanmon.css");
/// The enrollment screen's clock comparison (M-4), served from this origin.
pub const CLOCK_SCRIPT: &str = include_str!("../static/clock.js");

pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Renderer {
        let mut env = Environment::new();
        minijinja_embed::load_templates!(&mut env);
        Renderer { env }
    }

    /// Renders a template; a failure is a bug in a template, logged, and shown as a
    /// plain message rather than a half page.
    pub fn render(&self, name: &str, ctx: Value) -> String {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = name, error = %e, "template failed");
                "<!doctype html><title>kanmon</title><p>Internal error / 内部エラー</p>".to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn every_screen_renders_in_both_languages_and_escapes() {
        let r = Renderer::new();
        for lang in Lang::ALL {
            let ctx = minijinja::context! {
                t => Value::from(minijinja::value::Serde(lang.text())), issuer => "AVM EX", title => "x", switch_url => "/", other_lang => "en",
                csrf => "tok", user => "<b>alice</b>", error => "", action => "/_kanmon/code",
                qr_svg => "<svg></svg>", key_groups => vec!["ABCD", "EFGH"], freshness => "new",
                status => 404, message => "m", request_id => "r", server_time => 2_000_000_000,
                rows => vec![minijinja::context! { id => "<b>alice</b>", two_factor => true }],
                audit => vec![minijinja::context! { detail => "<b>alice</b>" }], health => minijinja::context! {},
            };
            for page in [
                "login.html",
                "enroll.html",
                "code.html",
                "logout.html",
                "error.html",
                "admin.html",
            ] {
                let html = r.render(page, ctx.clone());
                assert!(html.contains(&format!("lang=\"{}\"", lang.code())), "{page}");
                assert!(!html.contains("<b>alice</b>"), "{page} must escape");
                for script in html.split("<script").skip(1) {
                    assert!(
                        script.starts_with(" src=\"/_kanmon/static/") && script.contains("></script>"),
                        "{page} has no inline script"
                    );
                    let body = script.split_once('>').unwrap().1;
                    assert!(body.starts_with("</script>"), "{page}: an external script has no body");
                }
            }
        }
    }
}
