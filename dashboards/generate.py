#!/usr/bin/env python3
"""Writes the Grafana dashboards in this folder (classic JSON, schemaVersion 41).

Edit this file, run `python3 dashboards/generate.py`, commit both. The tests check that the
JSON files are what this script writes, lint them, and evaluate every query against a real
Prometheus scraping a real agent (tests/prometheus.rs).

Titles and legends are Vietnamese (Grafana has no Vietnamese locale, so the words must be in
the dashboards); descriptions carry the English.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
# Selects an area and everything below it, at any depth, from the area_path label.
SUBTREE = 'area_path=~"(.+/)?$area(/.+)?"'


def datasource_var():
    return {
        "name": "datasource", "label": "Nguồn dữ liệu", "type": "datasource",
        "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
        "description": "Prometheus data source",
    }


def query_var(name, label, query, description, include_all=False):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query, "refresh": 2, "sort": 1, "includeAll": include_all,
        "multi": False, "current": {}, "hide": 0, "description": description,
    }


class Panels:
    def __init__(self):
        self.items = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def add(self, kind, title, description, targets, w=12, h=8, unit=None, options=None,
            field=None, transformations=None, thresholds=None):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        defaults = {"unit": unit} if unit else {}
        if thresholds:
            defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
            defaults["color"] = {"mode": "thresholds"}
        defaults.update(field or {})
        panel = {
            "id": len(self.items) + 1, "type": kind, "title": title, "description": description,
            "datasource": DS, "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
            "targets": [dict(t, datasource=DS, refId=chr(65 + i)) for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self.items.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def ts(expr, legend="", instant=False, table=False):
    t = {"expr": expr, "legendFormat": legend, "range": not instant, "instant": instant}
    if table:
        t["format"] = "table"
    return t


GREEN_RED = [{"color": "red", "value": None}, {"color": "orange", "value": 0.5}, {"color": "green", "value": 0.999}]


def dashboard(uid, title, description, panels, variables=()):
    return {
        "uid": uid, "title": title, "description": description, "tags": ["iocwatch"],
        "schemaVersion": 41, "version": 1, "editable": True, "graphTooltip": 1,
        "timezone": "browser", "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [datasource_var(), *variables]},
        "annotations": {"list": []}, "links": [], "panels": panels.items,
    }


def province():
    p = Panels()
    p.add("stat", "Tổng số đối tượng", "All targets in the province (whole area tree).",
          [ts('sum(iocwatch_area_targets{area="$province"})', "Tổng số", instant=True)], w=4, h=4)
    for state, label in [("up", "Hoạt động"), ("degraded", "Suy giảm"), ("down", "Mất kết nối"),
                         ("unreachable", "Không truy cập được"), ("unknown", "Chưa rõ")]:
        p.add("stat", f"Đối tượng {label.lower()}",
              f"Targets {state} in the province (whole area tree)."
              + (" Unreachable: down behind an upstream (depends_on) that is down." if state == "unreachable" else ""),
              [ts(f'sum(iocwatch_area_targets{{area="$province",state="{state}"}})', label, instant=True)], w=4, h=4)
    p.add("geomap", "Bản đồ xã, phường theo tình trạng",
          "Communes and wards coloured by the share of their targets up (green all up, orange some, red most down).",
          [ts('iocwatch_area_info{lat!="",' + 'area_path=~"$province(/.+)?"} * on (area) group_left () '
              '(sum by (area) (iocwatch_area_targets{state="up"}) / clamp_min(sum by (area) (iocwatch_area_targets), 1))',
              instant=True, table=True)],
          w=14, h=16, unit="percentunit", thresholds=GREEN_RED,
          transformations=[{"id": "convertFieldType", "options": {"conversions": [
              {"targetField": "lat", "destinationType": "number"},
              {"targetField": "lon", "destinationType": "number"}]}}],
          options={"view": {"id": "coords", "lat": 22.1, "lon": 104.3, "zoom": 8},
                   "controls": {"showZoom": True, "mouseWheelZoom": True},
                   "layers": [{"type": "markers", "name": "Xã, phường",
                               "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                               "config": {"showLegend": True, "style": {
                                   "size": {"fixed": 8}, "color": {"field": "Value"},
                                   "text": {"field": "name", "mode": "field"}}},
                               "tooltip": True}]})
    p.add("table", "Sự cố hiện tại", "Checks failing now, with their target, area and system.",
          [ts("iocwatch_probe_success == 0", instant=True, table=True)], w=10, h=8,
          transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}])
    p.add("table", "Cảnh báo đang hoạt động",
          "Alerts of the agents now: firing (sent), suppressed (behind a down upstream, with the root cause alerting instead), "
          "in maintenance, or pending.",
          [ts('iocwatch_alert_active{state!="pending"}', instant=True, table=True)], w=24, h=8,
          transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}])
    p.add("bargauge", "Hệ thống dùng chung", "Share of each shared system's endpoints that are up now.",
          [ts("sum by (system) (iocwatch_system_targets{state=\"up\"}) / clamp_min(sum by (system) (iocwatch_system_targets), 1)",
              "{{system}}", instant=True)], w=10, h=8, unit="percentunit", thresholds=GREEN_RED,
          options={"orientation": "horizontal", "displayMode": "lcd"})
    p.add("timeseries", "Số đối tượng theo tình trạng", "Targets per state over time.",
          [ts('sum by (state) (iocwatch_area_targets{area="$province"})', "{{state}}")], w=24, h=8)
    variables = [query_var("province", "Tỉnh", 'label_values(iocwatch_area_info{parent=""}, area)',
                           "Root of the area tree (province code)")]
    return dashboard("iocwatch-province", "iocwatch — Tổng quan tỉnh",
                     "Province overview: map of communes, targets by state, incidents, shared systems.", p, variables)


def area():
    p = Panels()
    p.add("stat", "Tình trạng đối tượng trong địa bàn", "Targets of the area and everything below it, by state.",
          [ts('iocwatch_area_targets{area="$area"}', "{{state}}", instant=True)], w=24, h=4)
    p.add("table", "Kết quả kiểm tra", "Last result of every check in the area subtree (1 ok, 0 failed).",
          [ts(f"iocwatch_probe_success{{{SUBTREE}}}", instant=True, table=True)], w=24, h=8,
          transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}}}])
    p.add("timeseries", "Tỷ lệ mất gói", "ICMP packet loss per target.",
          [ts(f"1 - sum by (target) (rate(iocwatch_icmp_packets_received_total{{{SUBTREE}}}[$__rate_interval])) "
              f"/ clamp_min(sum by (target) (rate(iocwatch_icmp_packets_sent_total{{{SUBTREE}}}[$__rate_interval])), 1e-9)",
              "{{target}}")], unit="percentunit")
    p.add("timeseries", "Độ trễ (p90)", "90th percentile ICMP round-trip time per target.",
          [ts(f"histogram_quantile(0.9, sum by (target, le) (rate(iocwatch_icmp_rtt_seconds_bucket{{{SUBTREE}}}[$__rate_interval])))",
              "{{target}}")], unit="s")
    p.add("timeseries", "Lỗi theo nguyên nhân", "Failed rounds per second by reason.",
          [ts(f"sum by (reason) (rate(iocwatch_probe_failures_total{{{SUBTREE}}}[$__rate_interval]))", "{{reason}}")], w=24)
    variables = [query_var("area", "Địa bàn", "label_values(iocwatch_area_info, area)", "Area code, any depth")]
    return dashboard("iocwatch-area", "iocwatch — Chi tiết địa bàn",
                     "Area drill-down at any depth: its targets, loss, latency and failures.", p, variables)


def target():
    p = Panels()
    sel = 'target="$target"'
    p.add("timeseries", "Độ trễ ICMP (dải kiểu smokeping)",
          "Smokeping-style bands from the RTT histogram: median, 90th and 99th percentile, and the last round's min/max.",
          [ts(f"histogram_quantile(0.5, sum by (le) (rate(iocwatch_icmp_rtt_seconds_bucket{{{sel}}}[$__rate_interval])))", "p50"),
           ts(f"histogram_quantile(0.9, sum by (le) (rate(iocwatch_icmp_rtt_seconds_bucket{{{sel}}}[$__rate_interval])))", "p90"),
           ts(f"histogram_quantile(0.99, sum by (le) (rate(iocwatch_icmp_rtt_seconds_bucket{{{sel}}}[$__rate_interval])))", "p99"),
           ts(f'iocwatch_icmp_round_rtt_seconds{{{sel},stat=~"min|max"}}', "{{stat}}")], w=24, unit="s")
    p.add("timeseries", "Tỷ lệ mất gói", "ICMP packet loss from the sent/received counters.",
          [ts(f"1 - sum(rate(iocwatch_icmp_packets_received_total{{{sel}}}[$__rate_interval])) "
              f"/ clamp_min(sum(rate(iocwatch_icmp_packets_sent_total{{{sel}}}[$__rate_interval])), 1e-9)", "mất gói")],
          unit="percentunit")
    p.add("timeseries", "Kết quả kiểm tra", "1 when the check's last round succeeded.",
          [ts(f"iocwatch_probe_success{{{sel}}}", "{{check}}")])
    p.add("timeseries", "Các giai đoạn HTTP", "HTTP phases of the last request: resolve, connect (with TLS), processing, transfer.",
          [ts(f"iocwatch_http_phase_seconds{{{sel}}}", "{{check}} {{phase}}")], unit="s",
          field={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}})
    p.add("timeseries", "Lỗi theo nguyên nhân", "Failed rounds per second by reason.",
          [ts(f"sum by (check, reason) (rate(iocwatch_probe_failures_total{{{sel}}}[$__rate_interval]))", "{{check}}: {{reason}}")])
    p.add("timeseries", "Thời gian kiểm tra TCP/HTTP", "Mean probe round duration (TCP and HTTP checks).",
          [ts(f"rate(iocwatch_probe_duration_seconds_sum{{{sel}}}[$__rate_interval]) / rate(iocwatch_probe_duration_seconds_count{{{sel}}}[$__rate_interval])",
              "{{check}}")], unit="s")
    p.add("stat", "Mã trạng thái HTTP", "Last HTTP status code.",
          [ts(f"iocwatch_http_status_code{{{sel}}}", "{{check}}", instant=True)], w=12, h=4)
    variables = [query_var("target", "Đối tượng", "label_values(iocwatch_probe_success, target)", "Target id")]
    return dashboard("iocwatch-target", "iocwatch — Chi tiết đối tượng",
                     "One target: latency bands, loss, HTTP phases, failures by reason.", p, variables)


def systems():
    p = Panels()
    p.add("bargauge", "Tính sẵn sàng trong khoảng thời gian",
          "Availability of each shared system over the selected range (share of successful check rounds).",
          [ts('avg by (system) (avg_over_time(iocwatch_probe_success{system!=""}[$__range]))', "{{system}}", instant=True)],
          w=12, h=8, unit="percentunit", thresholds=GREEN_RED, options={"orientation": "horizontal"})
    p.add("table", "Danh sách hệ thống", "Shared systems, their names and owners.",
          [ts("iocwatch_system_info", instant=True, table=True)], w=12, h=8,
          transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}])
    p.add("timeseries", "Thời gian phản hồi", "Mean round duration of the TCP and HTTP checks of each system.",
          [ts('sum by (system) (rate(iocwatch_probe_duration_seconds_sum{system!=""}[$__rate_interval])) '
              '/ sum by (system) (rate(iocwatch_probe_duration_seconds_count{system!=""}[$__rate_interval]))', "{{system}}")],
          unit="s")
    p.add("timeseries", "Tốc độ tiêu hao ngân sách lỗi (SLO 99.5%)",
          "Error-budget burn rate against a 99.5% availability objective over the last hour; 1 = on budget, 14.4 = a month's budget in two days.",
          [ts('(1 - avg by (system) (avg_over_time(iocwatch_probe_success{system!=""}[1h]))) / 0.005', "{{system}}")])
    p.add("table", "Truy cập theo điểm đo",
          "Share of the vantages (agents started with --vantage, e.g. one per commune) that reach each target: "
          "0 = the service is down (for everyone), between 0 and 1 = some vantages cannot reach it (their way is cut), 1 = reached from everywhere.",
          [ts("iocwatch:target_vantage_reach:ratio", instant=True, table=True),
           ts("iocwatch:target_up == 0", instant=True, table=True)],
          w=24, h=8, unit="percentunit",
          thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.001}, {"color": "green", "value": 0.999}],
          field={"mappings": [{"type": "value", "options": {"0": {"text": "Ngừng — down for everyone", "color": "red"}}}],
                 "custom": {"cellOptions": {"type": "color-background"}}})
    return dashboard("iocwatch-systems", "iocwatch — Hệ thống dùng chung",
                     "Shared systems: availability and response time per system, SLO burn.", p)


def security():
    p = Panels()
    p.add("table", "Chứng thư số sắp hết hạn (ngày)", "Days until each server certificate expires.",
          [ts("(iocwatch_tls_cert_expiry_timestamp_seconds - time()) / 86400", "{{target}}", instant=True, table=True)],
          w=12, h=8, unit="d", thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 7}, {"color": "green", "value": 21}])
    p.add("table", "Xếp hạng TLS", "TLS grade per endpoint: A = 4, B = 3, C = 2, F = 0.",
          [ts("iocwatch_tls_grade", instant=True, table=True)], w=12, h=8,
          thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 2}, {"color": "green", "value": 3}])
    p.add("table", "Giao thức TLS cũ còn được chấp nhận", "Servers that still accept TLS 1.0 or 1.1 (1 = accepted).",
          [ts("iocwatch_tls_legacy_protocol_accepted", instant=True, table=True)], w=12, h=8)
    p.add("table", "Nội dung trang thay đổi", "Watched pages: 1 when the content differs from the baseline (defacement, or a change to accept with `iocwatch baseline accept`).",
          [ts("iocwatch_content_changed", instant=True, table=True)], w=12, h=8)
    p.add("table", "Cổng mở ngoài dự kiến", "Ports found open that are not expected to be.",
          [ts("iocwatch_port_unexpected_open == 1", instant=True, table=True)], w=12, h=8)
    p.add("table", "Thiếu HTTP security header", "Required security headers missing per endpoint.",
          [ts("iocwatch_http_security_header_missing == 1", instant=True, table=True)], w=12, h=8)
    p.add("table", "Bản ghi DNS thay đổi", "DNS checks: 1 when the answer set differs from the baseline (a hijack signal).",
          [ts("iocwatch_dns_answer_changed", instant=True, table=True)], w=12, h=8)
    return dashboard("iocwatch-security", "iocwatch — An toàn thông tin",
                     "Security posture: certificate expiry, TLS grades, content changes, unexpected open ports.", p)


def agent():
    p = Panels()
    p.add("timeseries", "Độ trễ lịch kiểm tra (p99)", "How late probe rounds start against their schedule.",
          [ts("histogram_quantile(0.99, sum by (instance, kind, le) (rate(iocwatch_scheduler_lateness_seconds_bucket[$__rate_interval])))",
              "{{instance}} {{kind}}")], unit="s")
    p.add("timeseries", "Kiểm tra đang chạy", "Probes in flight per kind.",
          [ts("sum by (instance, kind) (iocwatch_probes_in_flight)", "{{instance}} {{kind}}")])
    p.add("stat", "Số kiểm tra", "Checks in the running config per kind.",
          [ts("sum by (kind) (iocwatch_checks_configured)", "{{kind}}", instant=True)], w=8, h=5)
    p.add("stat", "Tải cấu hình gần nhất", "1 when the last config load succeeded.",
          [ts("iocwatch_config_last_reload_successful", "{{instance}}", instant=True)], w=8, h=5,
          thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}])
    p.add("table", "Phiên bản", "Build of each agent.",
          [ts("iocwatch_build_info", instant=True, table=True)], w=8, h=5)
    p.add("timeseries", "Lần tải cấu hình", "Config reloads per result.",
          [ts("sum by (result) (increase(iocwatch_config_reloads_total[$__rate_interval]))", "{{result}}")])
    p.add("timeseries", "Thời gian thu thập /metrics", "How long Prometheus takes to scrape each agent.",
          [ts('scrape_duration_seconds{job="iocwatch"}', "{{instance}}")], unit="s")
    p.add("timeseries", "Thông báo đã gửi", "Notification attempts per notifier and result (success, failure, dropped).",
          [ts("sum by (notifier, result) (rate(iocwatch_notifications_total[$__rate_interval]))", "{{notifier}} {{result}}")])
    p.add("timeseries", "Hàng đợi thông báo", "Messages waiting in each notifier's outbox; a growing queue is a receiver that is down.",
          [ts("sum by (instance, notifier) (iocwatch_notification_queue_length)", "{{instance}} {{notifier}}")])
    p.add("timeseries", "Cảnh báo theo trạng thái", "Alerts by state (firing, suppressed, maintenance, pending) and severity.",
          [ts("sum by (state, severity) (iocwatch_alerts)", "{{state}} {{severity}}")], w=24)
    p.add("stat", "Cơ sở dữ liệu", "1 while the agent's database takes writes; 0 while commits fail (alerts wait in memory).",
          [ts("iocwatch_store_healthy", "{{instance}}", instant=True)], w=8, h=5,
          thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}])
    p.add("timeseries", "Ghi chờ cơ sở dữ liệu", "Writes waiting for a commit, and failed commits, per agent.",
          [ts("iocwatch_store_pending_writes", "{{instance}} waiting"),
           ts("increase(iocwatch_store_errors_total[$__rate_interval])", "{{instance}} errors")], w=16, h=5)
    return dashboard("iocwatch-agent", "iocwatch — Sức khỏe tác tử",
                     "Agent self-health: scheduler lateness, probes in flight, reloads, notifications.", p)


DASHBOARDS = [province, area, target, systems, security, agent]


def main():
    check = "--check" in sys.argv
    stale = []
    for make in DASHBOARDS:
        board = make()
        path = HERE / f"{board['uid']}.json"
        text = json.dumps(board, ensure_ascii=False, indent=2) + "\n"
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.exit(f"out of date, run python3 dashboards/generate.py: {', '.join(stale)}")


if __name__ == "__main__":
    main()
