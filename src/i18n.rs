//! Languages of the gateway's screens. Every text a user reads is a field of [`Text`],
//! so a message missing in one language is a compile error, not a blank on a screen.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Ja, Lang::En];

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn text(self) -> &'static Text {
        match self {
            Lang::Ja => &JA,
            Lang::En => &EN,
        }
    }

    /// cookie > Accept-Language (by q-value) > configured default.
    pub fn negotiate(cookie: Option<&str>, accept_language: Option<&str>, default: Lang) -> Lang {
        cookie
            .and_then(Lang::parse)
            .or_else(|| accept_language.and_then(from_accept_language))
            .unwrap_or(default)
    }
}

/// The supported language with the highest q-value; ties go to the earlier entry.
fn from_accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let primary = tag.split('-').next().unwrap_or("");
        let Some(lang) = Lang::parse(primary) else {
            continue;
        };
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(lang, _)| lang)
}

/// Every sentence of the gateway's screens. `{n}`, `{user}` and the like are filled in
/// by the template with `replace`.
#[derive(Debug, Serialize)]
pub struct Text {
    pub lang: &'static str,
    pub lang_name: &'static str,
    pub product: &'static str,
    pub switch_to: &'static str,

    pub login_screen: &'static str,
    pub login_title: &'static str,
    pub user_id: &'static str,
    pub password: &'static str,
    pub login_button: &'static str,

    pub enroll_title: &'static str,
    pub enroll_intro: &'static str,
    pub manual_key_hint: &'static str,
    pub enroll_same_key: &'static str,
    pub enroll_new_key: &'static str,
    pub code_label: &'static str,
    pub submit: &'static str,

    pub code_title: &'static str,
    pub code_intro: &'static str,
    pub reset_link: &'static str,

    pub dashboard: &'static str,
    pub two_step: &'static str,
    pub administrator: &'static str,
    pub user: &'static str,

    pub logout_title: &'static str,
    pub logout_intro: &'static str,
    pub logout_button: &'static str,
    pub logout_everywhere: &'static str,
    pub logged_out: &'static str,
    pub login_again: &'static str,

    pub err_credentials: &'static str,
    pub err_code_wrong: &'static str,
    pub err_code_not_digits: &'static str,
    pub err_code_length: &'static str,
    pub err_clock_ahead: &'static str,
    pub err_clock_behind: &'static str,
    pub err_too_many_codes: &'static str,
    pub err_expired: &'static str,
    pub err_form: &'static str,

    pub error_title: &'static str,
    pub not_found: &'static str,
    pub bad_request: &'static str,
    pub forbidden: &'static str,
    pub payload_too_large: &'static str,
    pub internal_error: &'static str,
    pub bad_gateway: &'static str,
    pub gateway_timeout: &'static str,
    pub request_id: &'static str,
    pub back_to_start: &'static str,
    pub unauthorized_json: &'static str,
}

pub static JA: Text = Text {
    lang: "ja",
    lang_name: "日本語",
    product: "kanmon",
    switch_to: "English",

    login_screen: "ログイン画面",
    login_title: "ログイン",
    user_id: "ユーザーID",
    password: "パスワード",
    login_button: "ログイン",

    enroll_title: "QRコードをスキャン",
    enroll_intro: "認証アプリケーション(Google Authenticator、Microsoft Authenticator など)でQRコードをスキャンし、表示された6桁のコードを入力してください。",
    manual_key_hint: "QRコードをスキャンできない場合はコードを手入力してください。",
    enroll_same_key: "先ほどと同じキーです。認証アプリケーションに登録済みであれば、そのまま表示されているコードを入力できます。",
    enroll_new_key: "新しいキーです。以前にこのアカウントを認証アプリケーションに登録しかけた場合は、その登録を削除してください。",
    code_label: "Authenticator App コード",
    submit: "送信",

    code_title: "認証コードを入力",
    code_intro: "認証アプリケーションに表示されている6桁のコードを入力してください。",
    reset_link: "二段階認証をリセット",

    dashboard: "ダッシュボード",
    two_step: "二段階認証",
    administrator: "管理者",
    user: "一般ユーザー",

    logout_title: "ログアウト",
    logout_intro: "{user} としてログインしています。ログアウトしますか?",
    logout_button: "ログアウト",
    logout_everywhere: "ほかのすべての端末からもログアウトする",
    logged_out: "ログアウトしました。",
    login_again: "再度ログイン",

    err_credentials: "ユーザーIDまたはパスワードが正しくありません。",
    err_code_wrong: "コードが正しくありません。認証アプリケーションに表示されている最新のコードを入力してください。",
    err_code_not_digits: "コードは数字のみで入力してください。",
    err_code_length: "コードは6桁です。",
    err_clock_ahead: "コードが正しくありません。スマートフォンの時計が約{n}分進んでいるようです。時刻の自動設定を有効にしてください。",
    err_clock_behind: "コードが正しくありません。スマートフォンの時計が約{n}分遅れているようです。時刻の自動設定を有効にしてください。",
    err_too_many_codes: "誤ったコードが続いたため、ログインを最初からやり直してください。",
    err_expired: "時間切れです。もう一度ログインしてください。",
    err_form: "フォームの送信を確認できませんでした。ページを再読み込みして、もう一度お試しください。",

    error_title: "エラー",
    not_found: "ページが見つかりません。",
    bad_request: "リクエストが正しくありません。",
    forbidden: "この操作は許可されていません。",
    payload_too_large: "送信されたデータが大きすぎます。",
    internal_error: "内部エラーが発生しました。しばらくしてからもう一度お試しください。",
    bad_gateway: "ダッシュボードに接続できません。しばらくしてからもう一度お試しください。解決しない場合は管理者に連絡してください。",
    gateway_timeout: "ダッシュボードの応答がありません。しばらくしてからもう一度お試しください。解決しない場合は管理者に連絡してください。",
    request_id: "リクエストID",
    back_to_start: "トップへ戻る",
    unauthorized_json: "ログインが必要です。",
};

pub static EN: Text = Text {
    lang: "en",
    lang_name: "English",
    product: "kanmon",
    switch_to: "日本語",

    login_screen: "Log in",
    login_title: "Log in",
    user_id: "User ID",
    password: "Password",
    login_button: "Log in",

    enroll_title: "Scan QR code",
    enroll_intro: "Scan the QR code with your authenticator app (Google Authenticator, Microsoft Authenticator, …) and enter the 6-digit code it shows.",
    manual_key_hint: "If you cannot scan the QR code, enter the code manually.",
    enroll_same_key: "This is the same key as before. If your app already has it, just enter the code it shows.",
    enroll_new_key: "This is a new key. If you started adding this account to your app before, delete that entry.",
    code_label: "Authenticator App code",
    submit: "Submit",

    code_title: "Enter authentication code",
    code_intro: "Enter the 6-digit code shown in your authenticator app.",
    reset_link: "Reset two-step authentication",

    dashboard: "Dashboard",
    two_step: "Two-step authentication",
    administrator: "Administrator",
    user: "User",

    logout_title: "Log out",
    logout_intro: "You are logged in as {user}. Log out?",
    logout_button: "Log out",
    logout_everywhere: "Also log out on all other devices",
    logged_out: "You have been logged out.",
    login_again: "Log in again",

    err_credentials: "The user ID or password is incorrect.",
    err_code_wrong: "The code is incorrect. Enter the latest code shown in your authenticator app.",
    err_code_not_digits: "The code consists of digits only.",
    err_code_length: "The code has 6 digits.",
    err_clock_ahead: "The code is incorrect. Your phone's clock seems to be about {n} minutes fast. Turn on automatic time in its settings.",
    err_clock_behind: "The code is incorrect. Your phone's clock seems to be about {n} minutes slow. Turn on automatic time in its settings.",
    err_too_many_codes: "Too many wrong codes. Please log in again.",
    err_expired: "Your login took too long. Please log in again.",
    err_form: "The form could not be verified. Reload the page and try again.",

    error_title: "Error",
    not_found: "Page not found.",
    bad_request: "The request is not valid.",
    forbidden: "This action is not allowed.",
    payload_too_large: "The submitted data is too large.",
    internal_error: "An internal error occurred. Please try again later.",
    bad_gateway: "The dashboard cannot be reached. Please try again later, and contact your administrator if this persists.",
    gateway_timeout: "The dashboard did not answer in time. Please try again later, and contact your administrator if this persists.",
    request_id: "Request ID",
    back_to_start: "Back to start",
    unauthorized_json: "Login required.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_highest_q() {
        assert_eq!(from_accept_language("en;q=0.5, ja"), Some(Lang::Ja));
        assert_eq!(from_accept_language("fr, en-US;q=0.8, ja;q=0.3"), Some(Lang::En));
        assert_eq!(from_accept_language("fr, de"), None);
        assert_eq!(from_accept_language("ja;q=0, en;q=0.1"), Some(Lang::En));
        assert_eq!(from_accept_language("ja;q=abc"), None);
    }

    #[test]
    fn cookie_wins_over_header_and_default() {
        assert_eq!(Lang::negotiate(Some("en"), Some("ja"), Lang::Ja), Lang::En);
        assert_eq!(Lang::negotiate(Some("xx"), Some("en"), Lang::Ja), Lang::En);
        assert_eq!(Lang::negotiate(None, None, Lang::En), Lang::En);
    }
}
