//! Renders a delivery for people: Chinese markdown for the chat robots
//! (WeCom, DingTalk) within the service's byte limit, and plain text for
//! mail. Pure functions; the most severe item leads and evacuation items
//! carry an unmistakable `**【撤人】**` mark.

use std::collections::HashSet;

use super::{Delivery, severity_rank};
use crate::alert::outbox::Notification;

/// What the robots show.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// One line: the notification preview (DingTalk `title`).
    pub title: String,
    /// The markdown, at most the byte limit it was rendered for.
    pub text: String,
}

/// Chinese name of a transition.
pub fn transition_cn(t: &str) -> &str {
    match t {
        "raised" => "新报警",
        "renotified" => "仍未处置",
        "escalated" => "已升级",
        "cleared" => "已解除",
        "acknowledged" => "已签收",
        "disposed" => "已处置",
        "closed" => "已关闭",
        "task_overdue" => "核查任务逾期",
        other => other,
    }
}

/// Chinese name of a severity.
pub fn severity_cn(s: &str) -> &str {
    match s {
        "critical" => "严重",
        "major" => "较重",
        "minor" => "一般",
        other => other,
    }
}

/// Chinese name of a jurisdiction level.
pub fn level_cn(l: &str) -> &str {
    match l {
        "county" => "县级",
        "city" => "市级",
        "province" => "省级",
        other => other,
    }
}

const EVACUATION: &str = "【撤人】";

/// The item's mark: evacuation above all, else the severity.
fn mark(n: &Notification) -> String {
    if n.kind == "evacuation" {
        format!("**{EVACUATION}**")
    } else {
        format!("**【{}】**", severity_cn(&n.severity))
    }
}

/// The title without a leading 【撤人】 (the mark says it already).
fn bare_title(n: &Notification) -> &str {
    n.title.strip_prefix(EVACUATION).unwrap_or(&n.title).trim()
}

/// Items most severe first (stable: equal items keep their order).
fn sorted(items: &[Notification]) -> Vec<&Notification> {
    let mut v: Vec<&Notification> = items.iter().collect();
    v.sort_by_key(|n| severity_rank(n));
    v
}

/// One item's markdown block.
fn block(n: &Notification) -> String {
    let mut s = format!("{} {}\n", mark(n), bare_title(n));
    s.push_str(&format!(
        "> {} · {} · {}（{}）· {}\n> {}",
        transition_cn(&n.transition),
        severity_cn(&n.severity),
        n.mine_name,
        n.mine,
        level_cn(&n.level),
        n.at
    ));
    for line in &n.body {
        s.push_str("\n> ");
        s.push_str(line);
    }
    s
}

fn header(n: usize, mines: usize, evacuations: usize) -> String {
    if n <= 1 {
        return String::new();
    }
    let mut h = format!("### 煤矿安全预警 {n} 条（{mines} 个矿）");
    if evacuations > 0 {
        h.push_str(&format!(" 含撤人 {evacuations} 条"));
    }
    h.push_str("\n\n");
    h
}

fn tail(rest: usize) -> String {
    format!("\n\n…另有 {rest} 条，请登录平台查看")
}

const SEP: &str = "\n\n";

/// How many of `items`, in the order given, fit whole into one message of
/// at most `max_bytes` (at least 1).
pub fn fits(items: &[Notification], max_bytes: usize) -> usize {
    let mut mines = HashSet::new();
    let mut evac = 0;
    let mut body = 0usize;
    let mut best = 1;
    for (i, n) in items.iter().enumerate() {
        mines.insert(n.mine.as_str());
        if n.kind == "evacuation" {
            evac += 1;
        }
        body += block(n).len() + if i > 0 { SEP.len() } else { 0 };
        if header(i + 1, mines.len(), evac).len() + body <= max_bytes {
            best = i + 1;
        } else {
            break;
        }
    }
    best
}

/// The preview line: the lead item's title, with a count when there are
/// more.
pub fn title(d: &Delivery) -> String {
    let items = sorted(&d.items);
    match items.as_slice() {
        [] => "煤矿安全预警".into(),
        [one] => one.title.clone(),
        [first, ..] => format!("{} 等 {} 条", first.title, items.len()),
    }
}

/// Renders `d` as markdown of at most `max_bytes` bytes: a header when
/// there are several items, then the items most severe first; items that
/// do not fit are counted in a last line `…另有 N 条`, and a single item
/// too long is cut on a character boundary.
pub fn render(d: &Delivery, max_bytes: usize) -> Rendered {
    let items = sorted(&d.items);
    let n = items.len();
    let mines: HashSet<&str> = items.iter().map(|i| i.mine.as_str()).collect();
    let evac = items.iter().filter(|i| i.kind == "evacuation").count();
    let head = header(n, mines.len(), evac);
    let blocks: Vec<String> = items.iter().map(|i| block(i)).collect();

    let mut text = head.clone();
    let mut shown = 0;
    for (i, b) in blocks.iter().enumerate() {
        let sep = if i > 0 { SEP.len() } else { 0 };
        let rest = n - i - 1;
        let reserve = if rest > 0 { tail(rest).len() } else { 0 };
        if text.len() + sep + b.len() + reserve > max_bytes {
            break;
        }
        if i > 0 {
            text.push_str(SEP);
        }
        text.push_str(b);
        shown += 1;
    }
    if shown == 0 && n > 0 {
        // Not even the lead item fits: cut it.
        let reserve = if n > 1 { tail(n - 1).len() } else { 0 };
        let room = max_bytes.saturating_sub(text.len() + reserve + "…".len());
        text.push_str(cut(&blocks[0], room));
        text.push('…');
        shown = 1;
    }
    if shown < n {
        text.push_str(&tail(n - shown));
    }
    if text.len() > max_bytes {
        // Only when max_bytes is absurdly small.
        let keep = cut(&text, max_bytes).len();
        text.truncate(keep);
    }
    Rendered {
        title: title(d),
        text,
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Mail subject and plain-text body.
pub fn plain(d: &Delivery) -> (String, String) {
    let items = sorted(&d.items);
    let subject = match items.as_slice() {
        [one] => one.title.clone(),
        [first, ..] => {
            let mines: HashSet<&str> = items.iter().map(|i| i.mine.as_str()).collect();
            format!(
                "煤矿安全预警 {} 条（{} 个矿）：{} 等",
                items.len(),
                mines.len(),
                first.title
            )
        }
        [] => "煤矿安全预警".into(),
    };
    let mut body = String::new();
    for (i, n) in items.iter().enumerate() {
        if i > 0 {
            body.push_str("\n\n");
        }
        let mark = if n.kind == "evacuation" {
            EVACUATION.to_string()
        } else {
            format!("【{}】", severity_cn(&n.severity))
        };
        body.push_str(&format!(
            "{}. {mark}{}\n   {} · {} · {}（{}）· {}\n   {}",
            i + 1,
            bare_title(n),
            transition_cn(&n.transition),
            severity_cn(&n.severity),
            n.mine_name,
            n.mine,
            level_cn(&n.level),
            n.at
        ));
        for line in &n.body {
            body.push_str("\n   ");
            body.push_str(line);
        }
    }
    body.push_str(&format!("\n\n--\nminewatch 消息编号 {}\n", d.key));
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::channels::tests::note;

    fn delivery(items: Vec<Notification>) -> Delivery {
        Delivery {
            key: "b-1".into(),
            items,
        }
    }

    #[test]
    fn the_most_severe_item_leads_and_evacuation_is_marked() {
        let d = delivery(vec![
            note(1, "m1", "overlimit", "minor"),
            note(2, "m2", "evacuation", "critical"),
            note(3, "m1", "overlimit", "major"),
        ]);
        let r = render(&d, 20_000);
        assert!(
            r.text
                .starts_with("### 煤矿安全预警 3 条（2 个矿） 含撤人 1 条")
        );
        let evac = r
            .text
            .find("**【撤人】** m2号煤矿")
            .expect("evacuation mark");
        let major = r.text.find("**【较重】**").expect("major");
        let minor = r.text.find("**【一般】**").expect("minor");
        assert!(evac < major && major < minor, "{}", r.text);
        // The 【撤人】 of the title is not repeated.
        assert!(!r.text.contains("【撤人】【撤人】"));
        assert!(!r.text.contains("】** 【撤人】"));
        assert!(r.title.starts_with("【撤人】m2号煤矿"));
        assert!(r.title.ends_with("等 3 条"));
    }

    #[test]
    fn a_single_item_has_no_header() {
        let r = render(&delivery(vec![note(1, "m1", "overlimit", "major")]), 2048);
        assert!(r.text.starts_with("**【较重】** m1号煤矿"), "{}", r.text);
        assert!(r.text.contains("> 新报警 · 较重 · m1号煤矿（m1）· 县级"));
        assert_eq!(r.title, "m1号煤矿 工作面 CH4 0.91% ≥ 0.80%");
    }

    #[test]
    fn overflow_is_counted_and_the_limit_holds() {
        let items: Vec<Notification> = (0..40)
            .map(|i| note(i, "m1", "overlimit", "major"))
            .collect();
        let d = delivery(items.clone());
        let r = render(&d, 2048);
        assert!(r.text.len() <= 2048, "{}", r.text.len());
        let shown = r.text.matches("**【较重】**").count();
        assert!((3..40).contains(&shown), "{shown}");
        assert!(
            r.text
                .ends_with(&format!("…另有 {} 条，请登录平台查看", 40 - shown)),
            "{}",
            r.text
        );
        // What `fits` promises renders whole.
        let k = fits(&items, 2048);
        let r = render(&delivery(items[..k].to_vec()), 2048);
        assert!(!r.text.contains("另有"));
        assert!(r.text.len() <= 2048);
        let r = render(&delivery(items[..k + 1].to_vec()), 2048);
        assert!(r.text.contains("另有"));
    }

    #[test]
    fn a_single_item_too_long_is_cut_on_a_char_boundary() {
        let mut n = note(1, "m1", "evacuation", "critical");
        n.body = vec!["很长的说明".repeat(300)];
        assert_eq!(fits(std::slice::from_ref(&n), 2048), 1);
        for limit in [2048, 2047, 2046, 2045, 500] {
            let r = render(&delivery(vec![n.clone()]), limit);
            assert!(r.text.len() <= limit);
            assert!(r.text.starts_with("**【撤人】**"));
            assert!(r.text.ends_with('…'));
        }
    }

    #[test]
    fn mail_subject_and_body() {
        let (subject, body) = plain(&delivery(vec![
            note(1, "m1", "overlimit", "minor"),
            note(2, "m2", "evacuation", "critical"),
        ]));
        assert!(subject.starts_with("煤矿安全预警 2 条（2 个矿）：【撤人】m2号煤矿"));
        assert!(body.starts_with("1. 【撤人】m2号煤矿"), "{body}");
        assert!(body.contains("2. 【一般】m1号煤矿"));
        assert!(body.contains("消息编号 b-1"));
    }
}
