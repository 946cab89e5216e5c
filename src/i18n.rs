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
    pub err_throttled: &'static str,

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

    pub reset_sent: &'static str,
    pub reset_limited: &'static str,
    pub reset_mail_failed: &'static str,
    pub reset_confirm_title: &'static str,
    pub reset_confirm_question: &'static str,
    pub reset_confirm_explain: &'static str,
    pub reset_confirm_button: &'static str,
    pub reset_other_browser: &'static str,
    pub reset_invalid: &'static str,
    pub reset_done: &'static str,
    pub reenroll_elsewhere: &'static str,

    pub admin_title: &'static str,
    pub admin_accounts: &'static str,
    pub admin_accounts_count: &'static str,
    pub admin_search: &'static str,
    pub admin_search_button: &'static str,
    pub admin_page: &'static str,
    pub admin_prev: &'static str,
    pub admin_next: &'static str,
    pub col_email: &'static str,
    pub col_role: &'static str,
    pub col_authenticator: &'static str,
    pub col_locked: &'static str,
    pub col_failures: &'static str,
    pub col_last_login: &'static str,
    pub col_sessions: &'static str,
    pub col_actions: &'static str,
    pub on: &'static str,
    pub off: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub never: &'static str,
    pub associated: &'static str,
    pub not_associated: &'static str,
    pub enrolling: &'static str,
    pub slowed_until: &'static str,
    pub action_reset: &'static str,
    pub action_unlock: &'static str,
    pub action_logout: &'static str,
    pub reason_label: &'static str,
    pub admin_done: &'static str,
    pub admin_reauthenticated: &'static str,
    pub err_reason_required: &'static str,
    pub err_own_association: &'static str,
    pub err_unknown_user: &'static str,
    pub stepup_title: &'static str,
    pub stepup_intro: &'static str,
    pub stepup_button: &'static str,
    pub err_stepup: &'static str,
    pub audit_title: &'static str,
    pub audit_user: &'static str,
    pub audit_event: &'static str,
    pub audit_from: &'static str,
    pub audit_to: &'static str,
    pub audit_filter: &'static str,
    pub audit_none: &'static str,
    pub col_time: &'static str,
    pub col_actor: &'static str,
    pub col_outcome: &'static str,
    pub col_detail: &'static str,
    pub health_title: &'static str,
    pub health_upstream: &'static str,
    pub health_smtp: &'static str,
    pub health_clock: &'static str,
    pub health_clock_advice: &'static str,
    pub health_cert: &'static str,
    pub health_config: &'static str,
    pub not_configured: &'static str,
    pub unknown: &'static str,
    pub clock_skew_warning: &'static str,

    pub mail_greeting: &'static str,
    pub mail_reset_body: &'static str,
    pub mail_time: &'static str,
    pub mail_ip: &'static str,
    pub mail_browser: &'static str,
    pub mail_reset_action: &'static str,
    pub mail_not_you_password: &'static str,
    pub mail_not_you_admin: &'static str,
    pub mail_enrolled_subject: &'static str,
    pub mail_enrolled_body: &'static str,
    pub mail_reset_done_subject: &'static str,
    pub mail_reset_done_body: &'static str,
    pub mail_wrong_code_subject: &'static str,
    pub mail_wrong_code_body: &'static str,
    pub mail_abandoned_subject: &'static str,
    pub mail_abandoned_body: &'static str,
    pub mail_replay_subject: &'static str,
    pub mail_replay_body: &'static str,
    pub mail_locked_subject: &'static str,
    pub mail_locked_body: &'static str,
    pub mail_admin_reset_subject: &'static str,
    pub mail_admin_reset_body: &'static str,
    pub mail_admin_unlock_subject: &'static str,
    pub mail_admin_unlock_body: &'static str,
    pub mail_admin_logout_subject: &'static str,
    pub mail_admin_logout_body: &'static str,
    pub mail_test_subject: &'static str,
    pub mail_test_body: &'static str,
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
    err_throttled: "ログインの失敗が続いたため、しばらくログインできません。{n}分後にもう一度お試しください。",

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

    reset_sent: "「Two-Factor Authentication Reset」という件名のメールを {email} に送信しました。メール内のリンクは{minutes}分間有効です。リンクを使うまでは、認証コードで引き続きログインできます。",
    reset_limited: "リセットのメールは最近送信されています。メールボックスを確認するか、しばらくしてからもう一度お試しください。",
    reset_mail_failed: "メールを送信できませんでした。管理者に連絡してください。",
    reset_confirm_title: "二段階認証のリセット",
    reset_confirm_question: "アカウント {user} から認証アプリケーションの関連付けを解除しますか?",
    reset_confirm_explain: "解除すると、このアカウントのすべてのセッションが終了します。次回のログインで新しい認証アプリケーションを登録してください。",
    reset_confirm_button: "関連付けを解除",
    reset_other_browser: "このリンクは「二段階認証をリセット」をクリックしたWebブラウザーで開いてください。メールを別の端末で読んでいる場合は、そのWebブラウザーのアドレス欄にURLを手入力してください。",
    reset_invalid: "このリンクは無効か、有効期限が切れています。必要であれば、もう一度リセットを申請してください。",
    reset_done: "二段階認証がリセットされました。ログインして、認証アプリケーションを再度登録してください。",
    reenroll_elsewhere: "このアカウントの二段階認証はリセットされたばかりです。リセットを確定したWebブラウザーで、新しい認証アプリケーションを登録してください。",

    admin_title: "管理者ステータス",
    admin_accounts: "アカウント",
    admin_accounts_count: "{n} 件",
    admin_search: "ユーザーIDまたはメールアドレスで検索",
    admin_search_button: "検索",
    admin_page: "{n} / {total} ページ",
    admin_prev: "前へ",
    admin_next: "次へ",
    col_email: "メールアドレス",
    col_role: "権限",
    col_authenticator: "認証アプリ",
    col_locked: "ロック",
    col_failures: "連続失敗",
    col_last_login: "最終ログイン",
    col_sessions: "セッション",
    col_actions: "操作",
    on: "有効",
    off: "無効",
    yes: "はい",
    no: "いいえ",
    never: "なし",
    associated: "関連付け済み",
    not_associated: "未登録",
    enrolling: "登録中",
    slowed_until: "{time} まで待機",
    action_reset: "二段階認証をリセット",
    action_unlock: "ロックを解除",
    action_logout: "セッションを終了",
    reason_label: "理由(必須)",
    admin_done: "完了しました: {what}",
    admin_reauthenticated: "再認証しました。操作をもう一度実行してください。",
    err_reason_required: "理由を入力してください。",
    err_own_association: "自分の二段階認証はここではリセットできません。ログイン画面の「二段階認証をリセット」(メール)を使ってください。",
    err_unknown_user: "そのユーザーIDのアカウントはありません。",
    stepup_title: "再認証",
    stepup_intro: "この操作には、5分以内の認証が必要です。パスワードと認証コードを入力してください。",
    stepup_button: "再認証",
    err_stepup: "パスワードまたはコードが正しくありません。",
    audit_title: "監査ログ",
    audit_user: "アカウント",
    audit_event: "イベント",
    audit_from: "開始(UTC)",
    audit_to: "終了(UTC)",
    audit_filter: "絞り込む",
    audit_none: "該当する記録はありません。",
    col_time: "日時",
    col_actor: "実行者",
    col_outcome: "結果",
    col_detail: "詳細",
    health_title: "ゲートウェイの状態",
    health_upstream: "ダッシュボードへの接続",
    health_smtp: "SMTPサーバーへの接続",
    health_clock: "時計の同期",
    health_clock_advice: "時計が同期されていません。NTPクライアント(chrony など)を動かしてください。",
    health_cert: "証明書の有効期限",
    health_config: "設定の読み込み",
    not_configured: "未設定",
    unknown: "不明",
    clock_skew_warning: "お使いの端末の時計がサーバーの時計と15秒以上ずれています。端末の時刻の自動設定を有効にしてください。ずれていると認証コードが受け付けられないことがあります。",

    mail_greeting: "{user} 様",
    mail_reset_body: "ユーザー {user} の正しいパスワードが入力され、二段階認証のリセットが申請されました。",
    mail_time: "日時",
    mail_ip: "IPアドレス",
    mail_browser: "Webブラウザー",
    mail_reset_action: "リセットするには、申請したWebブラウザーで次のリンクを開いてください。リンクは{minutes}分間有効です。",
    mail_not_you_password: "心当たりがない場合は、このメールを無視し、直ちにパスワードを変更してください。パスワードが第三者に知られています。",
    mail_not_you_admin: "心当たりがない場合は、直ちに管理者に連絡してください。",
    mail_enrolled_subject: "新しい認証アプリケーションが登録されました",
    mail_enrolled_body: "アカウント {user} に新しい認証アプリケーションが登録されました。",
    mail_reset_done_subject: "二段階認証がリセットされました",
    mail_reset_done_body: "アカウント {user} の認証アプリケーションの関連付けが解除され、すべてのセッションが終了しました。",
    mail_wrong_code_subject: "誤った認証コードが入力されました",
    mail_wrong_code_body: "アカウント {user} の正しいパスワードが入力された後、誤った認証コードが入力されました。",
    mail_abandoned_subject: "ログインが認証コードの入力前に中断されました",
    mail_abandoned_body: "アカウント {user} の正しいパスワードが入力されましたが、認証コードが入力されないまま10分が経過しました。",
    mail_replay_subject: "使用済みの認証コードが入力されました",
    mail_replay_body: "アカウント {user} で、すでに使われた認証コードが再度入力されました。",
    mail_locked_subject: "認証コードの入力がロックされました",
    mail_locked_body: "アカウント {user} で誤った認証コードが続けて入力されたため、認証コードによるログインをロックしました。二段階認証をリセットするか、管理者にロックの解除を依頼してください。",
    mail_admin_reset_subject: "管理者が二段階認証をリセットしました",
    mail_admin_reset_body: "管理者がアカウント {user} の認証アプリケーションの関連付けを解除し、すべてのセッションを終了しました。次回のログインで新しい認証アプリケーションを登録してください。",
    mail_admin_unlock_subject: "管理者がロックを解除しました",
    mail_admin_unlock_body: "管理者がアカウント {user} のログイン失敗の記録とロックを解除しました。",
    mail_admin_logout_subject: "管理者がすべてのセッションを終了しました",
    mail_admin_logout_body: "管理者がアカウント {user} のすべてのセッションを終了しました。もう一度ログインしてください。",
    mail_test_subject: "kanmon テストメール",
    mail_test_body: "kanmon からのテストメールです。このメールが届いていれば、SMTPの設定は正しく動作しています。",
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
    err_throttled: "Too many failed attempts. Try again in {n} minutes.",

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

    reset_sent: "An e-mail with the subject “Two-Factor Authentication Reset” was sent to {email}. Its link is valid for {minutes} minutes. Until you use it, you can still log in with a code.",
    reset_limited: "A reset e-mail was sent recently. Check your mailbox, or try again later.",
    reset_mail_failed: "The e-mail could not be sent. Please contact your administrator.",
    reset_confirm_title: "Reset two-step authentication",
    reset_confirm_question: "Remove the authenticator from account {user}?",
    reset_confirm_explain: "All sessions of this account end, and the next login registers a new authenticator.",
    reset_confirm_button: "Remove the authenticator",
    reset_other_browser: "Open this link in the browser where you clicked “Reset two-step authentication”. If you read the e-mail on another device, type the URL into that browser's address bar.",
    reset_invalid: "This link is invalid or has expired. Request a new reset if you still need one.",
    reset_done: "Two-step authentication was reset. Log in to register your authenticator again.",
    reenroll_elsewhere: "Two-step authentication of this account was just reset. Register the new authenticator in the browser where you confirmed the reset.",

    admin_title: "Administrator status",
    admin_accounts: "Accounts",
    admin_accounts_count: "{n} accounts",
    admin_search: "Search by user ID or e-mail",
    admin_search_button: "Search",
    admin_page: "Page {n} of {total}",
    admin_prev: "Previous",
    admin_next: "Next",
    col_email: "E-mail",
    col_role: "Role",
    col_authenticator: "Authenticator",
    col_locked: "Locked",
    col_failures: "Failures",
    col_last_login: "Last login",
    col_sessions: "Sessions",
    col_actions: "Actions",
    on: "on",
    off: "off",
    yes: "yes",
    no: "no",
    never: "never",
    associated: "associated",
    not_associated: "none",
    enrolling: "enrolling",
    slowed_until: "waiting until {time}",
    action_reset: "Reset two-step authentication",
    action_unlock: "Unlock",
    action_logout: "End sessions",
    reason_label: "Reason (required)",
    admin_done: "Done: {what}",
    admin_reauthenticated: "Re-authenticated. Please repeat the action.",
    err_reason_required: "Please give a reason.",
    err_own_association: "You cannot reset your own two-step authentication here. Use “Reset two-step authentication” (by e-mail) on the code screen.",
    err_unknown_user: "There is no account with that user ID.",
    stepup_title: "Re-authenticate",
    stepup_intro: "This action needs an authentication from the last 5 minutes. Enter your password and authentication code.",
    stepup_button: "Re-authenticate",
    err_stepup: "The password or code is incorrect.",
    audit_title: "Audit trail",
    audit_user: "Account",
    audit_event: "Event",
    audit_from: "From (UTC)",
    audit_to: "To (UTC)",
    audit_filter: "Filter",
    audit_none: "No matching records.",
    col_time: "Time",
    col_actor: "Actor",
    col_outcome: "Outcome",
    col_detail: "Detail",
    health_title: "Gateway health",
    health_upstream: "Upstream reachable",
    health_smtp: "SMTP reachable",
    health_clock: "Clock synchronised",
    health_clock_advice: "The clock is not synchronised. Run an NTP client (chrony or similar).",
    health_cert: "Certificate expires",
    health_config: "Configuration loaded",
    not_configured: "not configured",
    unknown: "unknown",
    clock_skew_warning: "Your device's clock differs from the server's by more than 15 seconds. Turn on automatic time on your device; otherwise codes may be refused.",

    mail_greeting: "Hello {user},",
    mail_reset_body: "The correct password for {user} was entered and a reset of two-step authentication was requested.",
    mail_time: "Time",
    mail_ip: "IP address",
    mail_browser: "Browser",
    mail_reset_action: "To reset, open this link in the browser where you asked for it. It is valid for {minutes} minutes.",
    mail_not_you_password: "If this was not you, ignore this e-mail and change your password at once: someone else knows it.",
    mail_not_you_admin: "If this was not you, contact your administrator at once.",
    mail_enrolled_subject: "A new authenticator was added",
    mail_enrolled_body: "A new authenticator was added to account {user}.",
    mail_reset_done_subject: "Two-step authentication was reset",
    mail_reset_done_body: "The authenticator of account {user} was removed and all its sessions ended.",
    mail_wrong_code_subject: "A wrong authentication code was entered",
    mail_wrong_code_body: "After the correct password for {user}, a wrong authentication code was entered.",
    mail_abandoned_subject: "A login stopped before the code",
    mail_abandoned_body: "The correct password for {user} was entered, but no authentication code followed within 10 minutes.",
    mail_replay_subject: "A used authentication code was entered",
    mail_replay_body: "An authentication code that had already been used was entered again for {user}.",
    mail_locked_subject: "Code login was locked",
    mail_locked_body: "Too many wrong authentication codes were entered for account {user}, so logging in with a code is locked. Reset two-step authentication, or ask an administrator to unlock the account.",
    mail_admin_reset_subject: "An administrator reset two-step authentication",
    mail_admin_reset_body: "An administrator removed the authenticator of account {user} and ended all its sessions. Register a new authenticator at your next login.",
    mail_admin_unlock_subject: "An administrator unlocked your account",
    mail_admin_unlock_body: "An administrator cleared the failed logins and the lock of account {user}.",
    mail_admin_logout_subject: "An administrator ended your sessions",
    mail_admin_logout_body: "An administrator ended all sessions of account {user}. Please log in again.",
    mail_test_subject: "kanmon test e-mail",
    mail_test_body: "This is a test e-mail from kanmon. If it reached you, the SMTP settings work.",
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
