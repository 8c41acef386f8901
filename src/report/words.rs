//! A report's words and numbers as people read them, in Vietnamese or English.

use chrono::TimeZone;
use chrono_tz::Tz;

use super::By;
use crate::model::Language;

/// Column headings and phrases of one language.
pub struct Words {
    pub language: Language,
    pub title: &'static str,
    pub period: &'static str,
    pub made: &'static str,
    pub rank: &'static str,
    pub unit: &'static str,
    pub code: &'static str,
    pub availability: &'static str,
    pub availability_with_maintenance: &'static str,
    pub incidents: &'static str,
    pub downtime: &'static str,
    pub longest: &'static str,
    pub mttr: &'static str,
    pub latency_mean: &'static str,
    pub latency_p95: &'static str,
    pub targets: &'static str,
    pub rounds: &'static str,
    pub weekly: &'static str,
    pub week_of: &'static str,
    pub no_system: &'static str,
    pub no_owner: &'static str,
    pub no_data: &'static str,
    pub notes: &'static str,
}

const VI: Words = Words {
    language: Language::Vi,
    title: "Báo cáo mức độ sẵn sàng",
    period: "Kỳ báo cáo",
    made: "Lập lúc",
    rank: "Hạng",
    unit: "Đơn vị",
    code: "Mã",
    availability: "Sẵn sàng (trừ bảo trì)",
    availability_with_maintenance: "Sẵn sàng (tính cả bảo trì)",
    incidents: "Số sự cố",
    downtime: "Tổng thời gian gián đoạn",
    longest: "Gián đoạn dài nhất",
    mttr: "Thời gian khắc phục trung bình",
    latency_mean: "Độ trễ trung bình",
    latency_p95: "Độ trễ p95",
    targets: "Số điểm đo",
    rounds: "Số lượt đo",
    weekly: "Số sự cố theo tuần",
    week_of: "Tuần từ",
    no_system: "(không thuộc hệ thống)",
    no_owner: "(chưa rõ đơn vị quản lý)",
    no_data: "không có số liệu",
    notes: "Sẵn sàng = 1 − thời gian gián đoạn ÷ thời gian đo (trừ khung giờ bảo trì). \
            Sự cố trong khung bảo trì không được tính. Độ trễ: ICMP là thời gian khứ hồi, \
            các loại khác là thời gian một lượt đo.",
};

const EN: Words = Words {
    language: Language::En,
    title: "Availability report",
    period: "Period",
    made: "Made",
    rank: "Rank",
    unit: "Unit",
    code: "Code",
    availability: "Availability (maintenance excluded)",
    availability_with_maintenance: "Availability (maintenance counted)",
    incidents: "Incidents",
    downtime: "Total downtime",
    longest: "Longest downtime",
    mttr: "Mean time to recover",
    latency_mean: "Mean latency",
    latency_p95: "p95 latency",
    targets: "Targets",
    rounds: "Rounds",
    weekly: "Incidents per week",
    week_of: "Week of",
    no_system: "(no system)",
    no_owner: "(no owner)",
    no_data: "no data",
    notes: "Availability = 1 − downtime ÷ time observed (maintenance windows left out). \
            Incidents in maintenance windows are not counted. Latency: round-trip time for \
            ICMP, the probe's round for the other kinds.",
};

impl Words {
    pub fn new(language: Language) -> &'static Words {
        match language {
            Language::Vi => &VI,
            Language::En => &EN,
        }
    }

    pub fn grouping(&self, by: By) -> &'static str {
        match (self.language, by) {
            (Language::Vi, By::Area) => "Theo địa bàn",
            (Language::Vi, By::System) => "Theo hệ thống",
            (Language::Vi, By::Owner) => "Theo đơn vị quản lý",
            (Language::Vi, By::Target) => "Theo điểm đo",
            (Language::En, By::Area) => "By area",
            (Language::En, By::System) => "By system",
            (Language::En, By::Owner) => "By owner",
            (Language::En, By::Target) => "By target",
        }
    }

    /// `99.952 %`; a dash without data.
    pub fn percent(&self, ratio: Option<f64>) -> String {
        match ratio {
            Some(r) => {
                let text = format!("{:.3} %", r * 100.0);
                match self.language {
                    Language::Vi => text.replace('.', ","),
                    Language::En => text,
                }
            }
            None => "–".into(),
        }
    }

    /// `2 giờ 05 phút`, `45 giây`; `2 h 05 min`, `45 s` ([`crate::model::text::duration_words`]).
    pub fn duration(&self, ms: i64) -> String {
        crate::model::text::duration_words(u64::try_from(ms / 1000).unwrap_or(0), self.language)
    }

    /// Milliseconds to two decimals below 10 ms, else whole.
    pub fn millis(&self, seconds: Option<f64>) -> String {
        let text = match seconds {
            Some(s) if s * 1000.0 < 10.0 => format!("{:.2} ms", s * 1000.0),
            Some(s) => format!("{:.0} ms", s * 1000.0),
            None => return "–".into(),
        };
        match self.language {
            Language::Vi => text.replace('.', ","),
            Language::En => text,
        }
    }

    /// A day in the report's zone: `01/10/2026` (vi) or `2026-10-01` (en).
    pub fn day(&self, ms: i64, zone: Tz) -> String {
        self.local(ms, zone, "%d/%m/%Y", "%Y-%m-%d")
    }

    /// A time in the report's zone, to the minute.
    pub fn time(&self, ms: i64, zone: Tz) -> String {
        self.local(ms, zone, "%H:%M %d/%m/%Y", "%Y-%m-%d %H:%M")
    }

    fn local(&self, ms: i64, zone: Tz, vi: &str, en: &str) -> String {
        let pattern = match self.language {
            Language::Vi => vi,
            Language::En => en,
        };
        zone.timestamp_millis_opt(ms)
            .earliest()
            .map_or_else(|| ms.to_string(), |t| t.format(pattern).to_string())
    }

    /// `01/10/2026 – 31/12/2026`: the last day shown is the one `to` ends.
    pub fn period_text(&self, from: i64, to: i64, zone: Tz) -> String {
        format!("{} – {}", self.day(from, zone), self.day(to - 1, zone))
    }
}
