//! The console's two languages: English and Simplified Chinese. Every label is one entry of
//! [`catalogue!`], which takes both texts or does not compile, so no page can be half
//! translated. Dates, numbers and money are formatted here, per language.

use crate::domain::Millis;
use chrono::{DateTime, Datelike, Offset, Timelike, Utc};
use chrono_tz::Tz;

/// A language the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// The BCP 47 tag, for `<html lang>` and the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The language's own name, for the switch (deliberately not translated).
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Zh => "中文",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }

    /// A tag as the cookie or the switch gives it.
    pub fn parse(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag == "en" || tag.starts_with("en-") {
            Some(Lang::En)
        } else if tag == "zh" || tag.starts_with("zh-") {
            Some(Lang::Zh)
        } else {
            None
        }
    }

    /// The first language of an `Accept-Language` header the console speaks, by quality;
    /// English when none.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in header.split(',').enumerate() {
            let mut pieces = part.split(';');
            let Some(lang) = pieces.next().and_then(Lang::parse) else {
                continue;
            };
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // Higher quality wins; on a tie, the one listed first.
            if q > 0.0 && best.is_none_or(|(bq, _, _)| q > bq) {
                best = Some((q, i, lang));
            }
        }
        best.map_or(Lang::En, |(_, _, lang)| lang)
    }

    /// A whole number with thousands separators (both languages group by three with commas).
    pub fn number(self, n: i64) -> String {
        let digits = n.unsigned_abs().to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        if n < 0 {
            out.push('-');
        }
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// A span of milliseconds: `1 h 05 min`, `12 min 30 s` or `1小时05分`, `12分30秒`.
    pub fn span(self, ms: Millis) -> String {
        let t = self.texts();
        let secs = ms.max(0) / 1000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let sep = if self == Lang::En { " " } else { "" };
        if h > 0 {
            format!("{h}{sep}{}{sep}{m:02}{sep}{}", t.unit_h, t.unit_min)
        } else {
            format!("{m}{sep}{}{sep}{s:02}{sep}{}", t.unit_min, t.unit_s)
        }
    }
}

/// A language, the time zone times are shown in, and the shop's own currency: how the
/// console writes dates, times and money for one viewer. Everything else a language says
/// (its texts, numbers, spans) is the [`Lang`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locale {
    pub lang: Lang,
    pub tz: Tz,
    /// The shop's own currency (`currency`), shown with its local symbol.
    pub home: Option<[u8; 3]>,
}

impl std::ops::Deref for Locale {
    type Target = Lang;

    fn deref(&self) -> &Lang {
        &self.lang
    }
}

impl Locale {
    pub fn new(lang: Lang, tz: Tz, home: Option<&str>) -> Locale {
        let home = home
            .map(str::as_bytes)
            .filter(|b| b.len() == 3)
            .map(|b| [b[0], b[1], b[2]]);
        Locale { lang, tz, home }
    }

    /// English, in UTC.
    pub fn utc(lang: Lang) -> Locale {
        Locale::new(lang, Tz::UTC, None)
    }

    fn local(self, ms: Millis) -> Option<DateTime<Tz>> {
        DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&self.tz))
    }

    /// The zone as shown after a time: `UTC`, or its offset at that time (`UTC+8`,
    /// `UTC+5:30`, `UTC-5`), which no reader can mistake.
    fn zone(self, t: &DateTime<Tz>) -> String {
        let secs = t.offset().fix().local_minus_utc();
        if self.tz == Tz::UTC || secs == 0 && self.tz.name() == "Etc/UTC" {
            return "UTC".to_owned();
        }
        let sign = if secs < 0 { '-' } else { '+' };
        let (h, m) = (secs.abs() / 3600, secs.abs() / 60 % 60);
        if m == 0 {
            format!("UTC{sign}{h}")
        } else {
            format!("UTC{sign}{h}:{m:02}")
        }
    }

    /// `29 Nov 2026, 14:05 UTC` or `2026年11月29日 14:05 UTC+8`, in the console's zone.
    pub fn datetime(self, ms: Millis) -> String {
        let Some(t) = self.local(ms) else {
            return ms.to_string();
        };
        let zone = self.zone(&t);
        match self.lang {
            Lang::En => format!(
                "{} {} {}, {:02}:{:02} {zone}",
                t.day(),
                MONTHS[t.month0() as usize],
                t.year(),
                t.hour(),
                t.minute()
            ),
            Lang::Zh => format!(
                "{}年{}月{}日 {:02}:{:02} {zone}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute()
            ),
        }
    }

    /// A date alone, in the console's zone: `29 Nov 2026` or `2026年11月29日`.
    pub fn date(self, ms: Millis) -> String {
        let Some(t) = self.local(ms) else {
            return ms.to_string();
        };
        match self.lang {
            Lang::En => format!("{} {} {}", t.day(), MONTHS[t.month0() as usize], t.year()),
            Lang::Zh => format!("{}年{}月{}日", t.year(), t.month(), t.day()),
        }
    }

    /// A day without the time: `29 Nov` or `11月29日`.
    pub fn short_day(self, ms: Millis) -> String {
        let Some(t) = self.local(ms) else {
            return ms.to_string();
        };
        match self.lang {
            Lang::En => format!("{} {}", t.day(), MONTHS[t.month0() as usize]),
            Lang::Zh => format!("{}月{}日", t.month(), t.day()),
        }
    }

    /// An hour of the day in the console's zone: `14:00`.
    pub fn hour(self, ms: Millis) -> String {
        self.local(ms).map_or_else(
            || ms.to_string(),
            |t| format!("{:02}:{:02}", t.hour(), t.minute()),
        )
    }

    /// Minor units as money: `€1,234.50`, `¥88.00`; a currency without a symbol here shows
    /// its code (`SEK 12.00` in English, `12.00 SEK` in Chinese).
    /// The shop's own currency (`currency`) is written with its local symbol in both
    /// languages: `¥12.00` for a shop in China.
    pub fn money(self, cents: i64, currency: &str) -> String {
        let digits = minor_digits(currency);
        let scale = 10_i64.pow(digits);
        let sign = if cents < 0 { "-" } else { "" };
        let whole = self.number((cents / scale).abs());
        let amount = if digits == 0 {
            whole
        } else {
            format!(
                "{whole}.{:0width$}",
                (cents % scale).abs(),
                width = digits as usize
            )
        };
        let home = self
            .home
            .and_then(|h| std::str::from_utf8(&h).ok().map(str::to_owned));
        let symbol: Option<String> = match home.as_deref() {
            Some(home) if home == currency => home_symbol(currency)
                .or_else(|| symbol(self.lang, currency))
                .map(str::to_owned),
            // Another currency written like the shop's own (yen in a yuan shop): its
            // country's letters first.
            Some(home) => symbol(self.lang, currency).map(|s| {
                if Some(s) == home_symbol(home) {
                    format!("{}{s}", &currency[..2])
                } else {
                    s.to_owned()
                }
            }),
            None => symbol(self.lang, currency).map(str::to_owned),
        };
        match (symbol, self.lang) {
            (Some(symbol), _) => format!("{sign}{symbol}{amount}"),
            (None, Lang::En) => format!("{sign}{currency} {amount}"),
            (None, Lang::Zh) => format!("{sign}{amount} {currency}"),
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "HUF" | "TWD" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// A currency's symbol at home, where no other currency is meant.
fn home_symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "CNY" | "JPY" => "¥",
        "USD" | "HKD" | "TWD" | "SGD" | "AUD" | "CAD" | "NZD" => "$",
        "KRW" => "₩",
        "INR" => "₹",
        _ => return None,
    })
}

fn symbol(lang: Lang, currency: &str) -> Option<&'static str> {
    Some(match (currency, lang) {
        ("EUR", _) => "€",
        ("GBP", _) => "£",
        ("USD", Lang::En) => "$",
        ("USD", Lang::Zh) => "US$",
        ("CNY", Lang::En) => "CN¥",
        ("CNY", Lang::Zh) => "¥",
        ("JPY", Lang::En) => "¥",
        ("JPY", Lang::Zh) => "JP¥",
        ("HKD", _) => "HK$",
        _ => return None,
    })
}

/// Replaces each `{name}` of a catalogue text with its value.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Declares every label once with its English and Chinese text: the struct of all labels,
/// one instance per language, and the English texts (for the test that no English label
/// shows on a Chinese page). A label without both texts does not compile.
macro_rules! catalogue {
    ($($key:ident: $en:literal => $zh:literal,)*) => {
        /// Every label of the console, in one language.
        #[derive(Debug)]
        pub struct Texts {
            $(pub $key: &'static str,)*
        }

        pub static EN: Texts = Texts { $($key: $en,)* };
        pub static ZH: Texts = Texts { $($key: $zh,)* };

        /// Every label as (English, Chinese).
        pub const LABELS: &[(&str, &str)] = &[$(($en, $zh),)*];
    };
}

catalogue! {
    console_title: "Staff console" => "员工控制台",
    skip_to_content: "Skip to content" => "跳到正文",
    main_navigation: "Main navigation" => "主导航",
    nav_dashboard: "Dashboard" => "仪表盘",
    nav_orders: "Orders" => "订单",
    nav_customers: "Customers" => "客户",
    nav_expiring: "Expiring soon" => "即将超时",
    nav_sweep: "Sweep" => "超时清理",
    nav_late_payments: "Late payments" => "逾期付款",
    nav_products: "Products" => "商品",
    nav_webhooks: "Webhooks" => "Webhook 推送",
    nav_tokens: "Tokens" => "令牌",
    nav_audit: "Audit log" => "审计日志",
    signed_in_as: "Signed in as {name}" => "当前用户：{name}",
    sign_out: "Sign out" => "退出登录",
    switch_language: "Language" => "语言",

    sign_in: "Sign in" => "登录",
    sign_in_intro: "Paste a staff API token. It becomes a session in this browser; the token itself is not kept." => "粘贴员工 API 令牌。它会在此浏览器中换成一个会话；令牌本身不会被保存。",
    token_label: "Staff API token" => "员工 API 令牌",
    refused_unknown: "This token is unknown. Check that you pasted all of it." => "无法识别此令牌，请确认已完整粘贴。",
    refused_revoked: "This token was revoked. Ask for a new one." => "此令牌已被吊销，请申请新的令牌。",
    refused_expired: "This token has expired. Ask for a new one." => "此令牌已过期，请申请新的令牌。",
    refused_customer: "Customer tokens cannot sign in to the console; use a staff token." => "客户令牌不能登录控制台，请使用员工令牌。",
    signed_out: "You are signed out." => "您已退出登录。",

    unpaid_orders: "Unpaid orders" => "未付款订单",
    expiring_15: "Expiring within 15 minutes" => "15 分钟内超时",
    late_to_refund: "Late payments to refund" => "待退款的逾期付款",
    products_out_of_stock: "Products out of stock" => "缺货商品",
    chart_orders_per_day: "Orders per day, last 30 days" => "近 30 天每日订单数",
    chart_revenue_per_day: "Paid revenue per day, last 30 days ({currency})" => "近 30 天每日实收金额（{currency}）",
    chart_sweep_per_hour: "Orders cancelled by the sweep per hour, last 48 hours" => "近 48 小时每小时被超时清理取消的订单数",
    chart_backlog: "Unpaid orders by age" => "未付款订单按等待时长分布",
    chart_total: "{total} in all; highest {max}" => "合计 {total}；最高 {max}",
    age_under_5m: "< 5 min" => "< 5 分钟",
    age_5_15m: "5–15 min" => "5–15 分钟",
    age_15_30m: "15–30 min" => "15–30 分钟",
    age_30_60m: "30–60 min" => "30–60 分钟",
    age_1_6h: "1–6 h" => "1–6 小时",
    age_over_6h: "> 6 h" => "> 6 小时",

    status_pending: "Pending" => "待支付",
    status_paid: "Paid" => "待发货",
    status_shipped: "Shipped" => "待收货",
    status_completed: "Completed" => "已完成",
    status_cancelled: "Cancelled" => "已取消",
    status_refunding: "Refunding" => "退款中",
    status_refunded: "Refunded" => "已退款",
    all_statuses: "All" => "全部",
    payment_pending: "Awaiting payment" => "等待支付",
    payment_succeeded: "Succeeded" => "支付成功",
    payment_failed: "Failed" => "支付失败",
    payment_expired: "Expired" => "已过期",
    payment_cancelled: "Cancelled" => "已取消",
    payment_refunded: "Refunded" => "已退款",

    status_tabs: "Orders by status" => "按状态查看订单",
    filters: "Filters" => "筛选条件",
    filter_status: "Status" => "状态",
    filter_from: "Created from" => "创建起始日期",
    filter_until: "Created until" => "创建截止日期",
    filter_customer: "Customer ID" => "客户 ID",
    filter_product: "Product ID" => "商品 ID",
    search_number: "Find an order by number" => "按订单号查找",
    find: "Find" => "查找",
    apply_filters: "Apply" => "筛选",
    clear_filters: "Clear" => "清除",
    export_csv: "Export CSV" => "导出 CSV",
    older_orders: "Older orders" => "更早的订单",
    first_page: "Newest" => "最新",
    no_orders: "No orders match." => "没有符合条件的订单。",
    order_not_found: "No order has the number {number}." => "没有编号为 {number} 的订单。",
    bad_filter: "This filter is not valid: {field}." => "筛选条件无效：{field}。",
    col_number: "Number" => "编号",
    col_customer: "Customer" => "客户",
    col_total: "Total" => "金额",
    col_created: "Created" => "创建时间",

    order_heading: "Order {number}" => "订单 {number}",
    items: "Items" => "商品明细",
    col_product: "Product" => "商品",
    col_quantity: "Quantity" => "数量",
    col_unit_price: "Unit price" => "单价",
    payments: "Payments" => "支付记录",
    col_amount: "Amount" => "支付金额",
    col_expires: "Expires" => "过期时间",
    col_provider_ref: "Provider reference" => "支付渠道单号",
    refund_required: "Refund required" => "需要退款",
    col_provider: "Provider" => "支付渠道",
    col_at_provider: "At the provider" => "渠道状态",
    col_last_asked: "Last asked" => "上次查询",
    col_refund: "Refund" => "退款",
    provider_manual: "Manual" => "手动",
    provider_wechatpay: "WeChat Pay" => "微信支付",
    provider_alipay: "Alipay" => "支付宝",
    provider_stripe: "Stripe" => "Stripe 支付",
    provider_open_now: "open at the provider" => "渠道交易未结束",
    ask_provider: "Ask the provider now" => "立即向渠道查询",
    asked_paid: "{provider} says payment {id} was paid." => "{provider}表示支付 {id} 已付款。",
    asked_closed: "{provider} says payment {id} can no longer be paid." => "{provider}表示支付 {id} 已无法付款。",
    asked_open: "{provider} says payment {id} is open and unpaid." => "{provider}表示支付 {id} 尚未付款，交易仍然有效。",
    asked_deferred: "{provider} gave no usable answer about payment {id}: {reason}" => "{provider}未能就支付 {id} 给出可用答复：{reason}",
    refund_requested: "to be sent" => "待发起",
    refund_processing: "processing" => "处理中",
    refund_succeeded: "refunded" => "已退款",
    refund_refused: "refused" => "被拒绝",
    refund_through: "Refund through {provider}" => "通过{provider}退款",
    refund_sent_notice: "The refund of payment {id} was asked of {provider}: {state}." => "已向{provider}发起支付 {id} 的退款：{state}。",
    err_provider: "The payment provider did not do it: {message}" => "支付渠道未完成操作：{message}",
    timeline: "Timeline" => "时间线",
    tl_status: "Status changed" => "状态变更",
    tl_event: "Event recorded" => "记录事件",
    tl_delivery: "Webhook delivery" => "Webhook 投递",
    tl_attempts: "{n} attempt(s)" => "尝试 {n} 次",
    customer_note: "Customer's note" => "客户备注",
    cancel_reason: "Cancellation reason" => "取消原因",
    placed_at: "Placed" => "下单时间",
    paid_at: "Paid at" => "付款时间",
    cancelled_at: "Cancelled at" => "取消时间",
    deadline: "Payment deadline" => "付款截止时间",
    shipping: "Shipping" => "物流",
    actions: "Actions" => "操作",
    no_actions: "No action is possible in this status." => "此状态下没有可执行的操作。",
    act_cancel: "Cancel order" => "取消订单",
    act_ship: "Mark shipped" => "标记为已发货",
    act_complete: "Mark completed" => "标记为已完成",
    act_request_refund: "Request refund" => "申请退款",
    act_approve_refund: "Approve refund" => "批准退款",
    act_reject_refund: "Reject refund" => "拒绝退款",
    reason: "Reason" => "原因",
    reason_optional: "Reason (optional)" => "原因（可选）",
    carrier: "Carrier" => "承运商",
    tracking_number: "Tracking number" => "运单号",
    moved_notice: "Done: the order is now {status}." => "已完成：订单现在的状态是“{status}”。",

    err_invalid_transition: "This order cannot make that move now: it is {status}." => "订单当前状态为“{status}”，不能执行此操作。",
    err_forbidden: "You may not do this." => "您无权执行此操作。",
    err_not_found: "Not found." => "未找到。",
    err_conflict: "Something changed meanwhile, or this was already done; reload and check." => "数据已被修改或此操作已完成，请刷新后查看。",
    err_validation: "Check the field {field}: {message}" => "请检查字段 {field}。",
    err_insufficient_stock: "Not enough stock: {available} available." => "库存不足：可用 {available} 件。",
    err_unavailable: "The database is unavailable; try again shortly." => "数据库暂时不可用，请稍后重试。",
    err_internal: "Something went wrong; it was logged under request {id}." => "出现错误，已记录（请求 {id}）。",
    err_rate_limited: "Too many requests; wait {seconds} seconds." => "请求过多，请等待 {seconds} 秒。",
    err_forged: "Refused: this request did not come from the console's own pages." => "已拒绝：此请求并非来自控制台自身的页面。",
    page_not_found: "This page does not exist." => "此页面不存在。",
    back_to_dashboard: "Back to the dashboard" => "返回仪表盘",

    expiring_intro: "Unpaid orders by deadline, soonest first. Once its deadline has passed and no payment is open, the sweep cancels the order." => "按付款截止时间排列的未付款订单，最早到期的在前。订单过了截止时间且没有进行中的支付时，超时清理会将其取消。",
    live_updates: "This list refreshes itself every few seconds." => "此列表每隔几秒自动刷新。",
    col_deadline: "Deadline" => "截止时间",
    col_time_left: "Time left" => "剩余时间",
    col_units: "Units" => "件数",
    overdue: "Overdue" => "已超时",
    no_unpaid: "No unpaid orders." => "没有未付款订单。",
    unit_h: "h" => "小时",
    unit_min: "min" => "分",
    unit_s: "s" => "秒",

    sweep_intro: "A dry run: what the sweep would cancel now, with a timeout of {minutes} minutes (orders created before {cutoff}). Nothing has changed yet." => "试运行：按 {minutes} 分钟的超时时间，超时清理现在会取消的订单（创建于 {cutoff} 之前）。目前尚未做任何更改。",
    would_cancel: "Would cancel {count} order(s) holding {units} unit(s)." => "将取消 {count} 个订单，共释放 {units} 件库存。",
    units_per_product: "Units released per product" => "各商品将释放的库存",
    due_orders_first: "Orders that would be cancelled (first {n})" => "将被取消的订单（前 {n} 个）",
    run_now: "Run now" => "立即执行",
    refresh_preview: "Refresh the preview" => "刷新预览",
    preview_changed: "The due orders changed since the preview, so nothing was cancelled. Check the new preview below." => "预览之后待取消的订单发生了变化，因此未取消任何订单。请查看下方的新预览。",
    sweep_ran: "The sweep cancelled {cancelled} order(s) and released {units} unit(s); {skipped} skipped, {errors} failed." => "超时清理取消了 {cancelled} 个订单，释放 {units} 件库存；跳过 {skipped} 个，失败 {errors} 个。",
    nothing_due: "Nothing is due." => "没有到期的订单。",
    last_runs: "Recent runs" => "最近的运行记录",
    col_started: "Started" => "开始时间",
    col_trigger: "Started by" => "触发方式",
    col_found: "Found" => "找到",
    col_cancelled: "Cancelled" => "已取消",
    col_units_released: "Units released" => "释放件数",
    col_queried: "Asked providers" => "渠道查询",
    col_found_paid: "Found paid" => "查到已付",
    col_closed_at_provider: "Closed at provider" => "已在渠道关闭",
    col_deferred: "Deferred" => "已推迟",
    col_duration: "Duration" => "耗时",
    col_state: "State" => "状态",
    col_age: "Waiting for" => "已等待",
    trigger_scheduler: "Scheduler" => "定时任务",
    trigger_cli: "Command line" => "命令行",
    trigger_api: "HTTP API" => "HTTP 接口",
    trigger_console: "Console" => "控制台",
    run_finished: "Finished" => "已完成",
    run_running: "Running" => "运行中",
    run_stopped: "Stopped early" => "提前中止",
    run_interrupted: "Interrupted" => "已中断",
    dry_run: "Dry run" => "试运行",
    no_runs: "No runs yet." => "还没有运行记录。",

    late_intro: "Payments that succeeded after their order was cancelled. WeChat Pay, Alipay and Stripe payments are refunded through their provider by themselves (ask again here if the provider refused); refund manual payments through your own gateway, then record its refund reference here." => "订单取消后才成功的付款。微信支付、支付宝和 Stripe 的付款会自动通过原渠道退款（渠道拒绝时可在此重新发起）；手动付款请先通过您自己的支付网关退款，然后在此记录退款单号。",
    col_order: "Order" => "订单",
    col_payment: "Payment" => "支付",
    mark_settled: "Mark refund settled" => "标记为已退款",
    refund_reference: "Refund reference" => "退款单号",
    settled_notice: "Payment {id} is marked refunded." => "支付 {id} 已标记为已退款。",
    no_late: "No late payments to refund." => "没有待退款的逾期付款。",

    col_name: "Name" => "名称",
    col_price: "Price" => "价格",
    col_stock: "Stock" => "库存",
    col_sales: "Sold" => "已售",
    col_active: "On sale" => "在售",
    yes: "Yes" => "是",
    no: "No" => "否",
    low_stock: "Low stock" => "库存紧张",
    out_of_stock: "Out of stock" => "缺货",
    more_products: "More products" => "更多商品",
    no_products: "No products yet." => "还没有商品。",

    ledger: "Stock ledger" => "库存流水",
    col_change: "Change" => "变动",
    col_balance: "Balance" => "结余",
    col_by: "By" => "操作者",
    move_reserve: "Reserved" => "预留",
    move_release: "Released" => "释放",
    move_adjust: "Adjusted" => "人工调整",
    move_restock: "Restocked" => "退款入库",
    adjust_stock: "Adjust stock" => "调整库存",
    delta_label: "Change in units (negative to remove)" => "变动件数（负数表示减少）",
    adjusted_notice: "Stock is now {stock}." => "当前库存为 {stock} 件。",
    older_entries: "Older entries" => "更早的记录",
    no_entries: "No entries." => "没有记录。",

    endpoints: "Endpoints" => "接收端点",
    col_description: "Description" => "说明",
    col_event_types: "Event types" => "事件类型",
    all_types: "All types" => "全部类型",
    col_enabled: "Enabled" => "已启用",
    ordered_label: "Ordered delivery (one order's events arrive in sequence)" => "按序投递（同一订单的事件依次送达）",
    create_endpoint: "Add an endpoint" => "添加端点",
    event_types_hint: "Event types, separated by commas (empty: all)" => "事件类型，以逗号分隔（留空表示全部）",
    secret_once: "The endpoint's signing secret, shown only this once:" => "此端点的签名密钥（仅显示这一次）：",
    deliveries: "Recent deliveries" => "最近的投递",
    col_event: "Event" => "事件",
    col_attempts: "Attempts" => "尝试次数",
    col_next_attempt: "Next attempt" => "下次尝试",
    delivery_pending: "Waiting" => "等待中",
    delivery_succeeded: "Delivered" => "已送达",
    delivery_failed: "Failing, will retry" => "失败，将重试",
    delivery_dead: "Gave up" => "已放弃",
    redeliver: "Redeliver" => "重新投递",
    redelivered_notice: "Delivery {id} will be tried again now." => "投递 {id} 将立即重试。",
    no_endpoints: "No endpoints yet." => "还没有端点。",
    no_deliveries: "No deliveries." => "没有投递记录。",
    older_deliveries: "Older deliveries" => "更早的投递",

    create_token: "Create a token" => "创建令牌",
    col_role: "Role" => "角色",
    role_staff: "Staff" => "员工",
    role_customer: "Customer" => "客户",
    expires_in_days: "Expires after (days; empty: never)" => "有效期（天；留空表示永久）",
    token_once: "The new token, shown only this once:" => "新令牌（仅显示这一次）：",
    revoke: "Revoke" => "吊销",
    revoked_notice: "Token {id} is revoked." => "令牌 {id} 已吊销。",
    col_last_used: "Last used" => "最近使用",
    token_active: "Active" => "有效",
    token_expired: "Expired" => "已过期",
    token_revoked: "Revoked" => "已吊销",
    never: "Never" => "从不",
    more_tokens: "More tokens" => "更多令牌",

    col_when: "When" => "时间",
    col_actor: "Actor" => "操作者",
    col_action: "Action" => "动作",
    col_object: "Object" => "对象",
    col_detail: "Detail" => "详情",
    col_request: "Request" => "请求",
    search_customers: "Find customers by name, phone or external ID" => "按姓名、电话或外部 ID 查找客户",
    col_phone: "Phone" => "电话",
    col_external_id: "External ID" => "外部 ID",
    col_openid: "WeChat openid" => "微信 openid",
    customer_since: "Customer since" => "注册时间",
    no_customers: "No customers match." => "没有符合条件的客户。",
    more_customers: "More customers" => "更多客户",
    customer_heading: "Customer {name}" => "客户 {name}",
    erased_badge: "Personal data erased" => "个人信息已清除",
    erased_at: "Erased at" => "清除时间",
    customer_orders: "Latest orders" => "最近的订单",
    all_customer_orders: "All orders of this customer" => "该客户的全部订单",
    erase_data: "Erase personal data" => "清除个人信息",
    erase_hint: "Replaces the name, phone and WeChat openid, and the addresses of the customer's orders; amounts, history and stock stay. Refused while an order is still open." => "将替换客户的姓名、电话、微信 openid 及其订单的收货地址；金额、历史记录和库存不变。若仍有未完结的订单，则无法清除。",
    erase_confirm: "I understand this cannot be undone" => "我了解此操作无法撤销",
    erased_notice: "The customer's personal data was erased: {orders} order address(es), {events} event(s)." => "已清除该客户的个人信息：{orders} 个订单地址，{events} 个事件。",
    ship_to: "Ship to" => "收货信息",
    no_address: "No shipping address was given." => "未提供收货地址。",
    recipient: "Recipient" => "收件人",
    address: "Address" => "地址",
    address_erased: "Erased with the customer's personal data." => "已随客户个人信息一并清除。",
    packing_slip: "Packing slip" => "装箱单",
    print_slips: "Packing slips of paid orders" => "待发货订单的装箱单",
    print: "Print" => "打印",
    back_to_order: "Back to the order" => "返回订单",
    back_to_orders: "Back to the orders" => "返回订单列表",
    slips_heading: "Packing slips: {count} paid order(s) to ship" => "装箱单：{count} 个待发货订单",
    no_slips: "No paid orders are waiting to ship." => "没有待发货的订单。",
    col_sku: "SKU" => "商品编码",
    order_number: "Order number" => "订单号",
    correct_address: "Correct the shipping address" => "修改收货地址",
    field_country: "Country (ISO code)" => "国家或地区（ISO 代码）",
    field_province: "Province" => "省",
    field_city: "City" => "市",
    field_district: "District" => "区/县",
    field_town: "Town" => "乡镇/街道",
    field_line: "Street address" => "详细地址",
    field_postal_code: "Postal code" => "邮政编码",
    save_address: "Save the address" => "保存地址",
    address_saved: "The shipping address was corrected." => "收货地址已修改。",
    wechat_shipping: "WeChat shipping information" => "微信发货信息",
    upload_pending: "Waiting to be sent" => "等待上传",
    upload_failed: "Not accepted yet; will retry" => "尚未被接受，将重试",
    upload_succeeded: "Accepted by WeChat" => "微信已接收",
    upload_dead: "Gave up retrying" => "已停止重试",
    upload_last_error: "Last answer" => "最近一次答复",
    upload_accepted_at: "Accepted at" => "接收时间",
    upload_retry: "Send to WeChat again" => "重新上传到微信",
    upload_retried_notice: "The shipping information will be sent to WeChat again now." => "发货信息将立即重新上传到微信。",

    filter_object_type: "Object type" => "对象类型",
    filter_object_id: "Object ID" => "对象 ID",
    filter_request: "Request ID" => "请求 ID",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_numbers_and_money_per_language() {
        // 2026-11-29T14:05:00Z
        let t = 1_795_961_100_000;
        let (en, zh) = (Locale::utc(Lang::En), Locale::utc(Lang::Zh));
        assert_eq!(en.datetime(t), "29 Nov 2026, 14:05 UTC");
        assert_eq!(zh.datetime(t), "2026年11月29日 14:05 UTC");
        assert_eq!(Lang::En.number(1_234_567), "1,234,567");
        assert_eq!(Lang::En.number(-1000), "-1,000");
        assert_eq!(Lang::En.number(999), "999");
        assert_eq!(en.money(123_450, "EUR"), "€1,234.50");
        assert_eq!(zh.money(8_800, "CNY"), "¥88.00");
        assert_eq!(en.money(8_800, "CNY"), "CN¥88.00");
        assert_eq!(en.money(1_200, "SEK"), "SEK 12.00");
        assert_eq!(zh.money(1_200, "SEK"), "12.00 SEK");
        assert_eq!(en.money(500, "JPY"), "¥500");
        assert_eq!(en.money(-5, "EUR"), "-€0.05");
        assert_eq!(Lang::En.span(3_725_000), "1 h 02 min");
        assert_eq!(Lang::Zh.span(750_000), "12分30秒");
    }

    #[test]
    fn times_in_the_shops_zone_and_money_in_its_currency() {
        // 2026-11-29T23:30:00Z is 07:30 the next morning in Shanghai.
        let t = 1_795_995_000_000;
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        let (en, zh) = (
            Locale::new(Lang::En, shanghai, Some("CNY")),
            Locale::new(Lang::Zh, shanghai, Some("CNY")),
        );
        assert_eq!(en.datetime(t), "30 Nov 2026, 07:30 UTC+8");
        assert_eq!(zh.datetime(t), "2026年11月30日 07:30 UTC+8");
        assert_eq!(en.short_day(t), "30 Nov");
        assert_eq!(en.hour(t), "07:30");
        assert_eq!(en.money(1_200, "CNY"), "¥12.00");
        assert_eq!(zh.money(1_200, "CNY"), "¥12.00");
        assert_eq!(en.money(500, "JPY"), "JP¥500");
        assert_eq!(en.money(500, "EUR"), "€5.00");
        let kolkata = Locale::new(Lang::En, "Asia/Kolkata".parse().unwrap(), None);
        assert_eq!(kolkata.datetime(t), "30 Nov 2026, 05:00 UTC+5:30");
        let new_york = Locale::new(Lang::En, "America/New_York".parse().unwrap(), None);
        assert_eq!(new_york.datetime(t), "29 Nov 2026, 18:30 UTC-5");
    }

    #[test]
    fn accept_language_picks_the_best_spoken_language() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language("fr-FR,en;q=0.5,zh;q=0.4"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("de, zh-TW;q=0.7"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("en;q=0.2, zh;q=0.8"), Lang::Zh);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=0"), Lang::En);
    }

    #[test]
    fn every_label_is_translated() {
        for (en, zh) in LABELS {
            assert!(!en.is_empty() && !zh.is_empty());
            // Translated: not the English text again, and written in Chinese.
            assert_ne!(en, zh, "untranslated label");
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{en}: {zh} has no Chinese character"
            );
            // Placeholders must match, or a value would go missing in one language.
            let names = |s: &str| {
                let mut v: Vec<String> = s
                    .split('{')
                    .skip(1)
                    .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                    .collect();
                v.sort();
                v
            };
            if *en != EN.err_validation {
                assert_eq!(names(en), names(zh), "{en}");
            }
        }
    }

    #[test]
    fn fill_replaces_placeholders() {
        assert_eq!(
            fill("Order {number}", &[("number", "ORD-1")]),
            "Order ORD-1"
        );
    }
}
