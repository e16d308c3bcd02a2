// scgw duty desk: the live alert queue, resident card, actions, device health and charts.
// No framework and no third-party code: this page must load from the gateway alone and keep
// working for a whole shift. Data from the server is only ever set as text (never as HTML).
"use strict";

(() => {
  const I18N = {
    zh: {
      app_title: "社区服务站值班台", tab_queue: "告警队列", tab_devices: "设备状态",
      tab_pending: "待登记设备", tab_stats: "响应统计", logout: "退出",
      queue_title: "实时告警", queue_empty: "暂无未处理告警", closed_title: "最近结束",
      alarm_open: "立即查看", alarm_text: "紧急告警（{n}）：{what}", title_alarm: "【紧急】{what}",
      conn_live: "实时", conn_connecting: "连接中…", conn_down: "连接中断，正在重连…",
      sound_on: "提示音：开", sound_off: "提示音已关闭，点击开启", lang_switch: "English",
      state_open: "待接警", state_acknowledged: "处理中", state_resolved: "已结束",
      state_cancelled: "已取消", unreached: "无人接收通知", repeats: "呼叫{n}次",
      age: "{m}分{s}秒", age_h: "{h}小时{m}分", no_resident: "无登记居民",
      resident: "居民", address: "地址", phone: "电话", medical: "健康备注", contacts: "紧急联系人",
      volunteers: "负责志愿者", lives_alone: "独居", hidden_contacts: "联系方式仅对值班、管理员、响应人员可见",
      device: "设备", battery: "电量", last_seen: "最后上报", opened: "发生时间",
      acked_by: "接警人", actions: "处理", ack: "接警（我来处理）", assign: "指派",
      assign_to: "指派给", resolve: "结束告警", outcome: "处理结果", note: "备注",
      note_ph: "情况说明（可选）", add_note: "添加备注", timeline: "处理记录", close: "关闭",
      on_duty: "在岗", off_duty: "不在岗", load: "手上{n}单",
      done_ack: "已接警", done_assign: "已指派", done_resolve: "告警已结束", done_note: "备注已添加",
      done_adopt: "设备已登记", filter_status: "状态", filter_type: "类型", filter_search: "搜索",
      status_all: "全部", status_offline: "离线", status_low_battery: "低电量",
      status_never_seen: "从未上线", status_ok: "正常", type_all: "全部类型",
      col_device: "设备", col_type: "类型", col_place: "位置", col_seen: "最后上报",
      col_battery: "电量", col_status: "状态", online: "在线", offline: "离线",
      never: "从未上线", low_battery: "低电量", more_rows: "仅显示前{n}台，请用筛选缩小范围",
      readings: "读数曲线", range_24h: "24小时", range_7d: "7天", no_readings: "该时段没有读数",
      no_metrics: "近30天没有读数", pending_title: "待登记设备",
      pending_hint: "未登记的设备发来的消息会保存在这里，登记后才会产生告警。",
      pending_none: "没有待登记设备", first_seen: "首次出现", messages: "消息数",
      sos_count: "紧急呼叫", last_kind: "最近消息", adopt: "登记设备", name: "名称",
      resident_id: "居民编号", building: "楼", unit: "单元", room: "室",
      pending_sos: "未登记设备发出紧急呼叫：{ids}（请核实并登记）",
      stats_title: "接警响应时间（近7天）", period: "日期", priority: "级别",
      alerts: "告警数", acknowledged: "已接警", p50: "中位数", p90: "90%", within_60: "60秒内",
      within_180: "180秒内", all: "合计", seconds: "{n}秒", error: "操作失败：{msg}",
      view: "查看", minutes_ago: "{n}分钟前", hours_ago: "{n}小时前", days_ago: "{n}天前",
      just_now: "刚刚", system: "系统", pick_alert: "点击左侧告警，查看居民信息并处理。",
      act_opened: "告警产生", act_repeat: "再次呼叫", act_step: "通知步骤", act_notify: "发送通知",
      act_accepted: "已接单", act_declined: "无法前往", act_acknowledged: "值班台接警",
      act_assigned: "指派", act_resolved: "告警结束", act_cancelled_by_cancel: "居民取消",
      act_cancelled_by_restore: "传感器恢复，自动取消", act_cancel: "居民取消（已超时）",
      act_restore: "传感器恢复", act_device_feedback: "设备反馈", act_step_unreached: "无人接收",
      act_note: "备注", act_arrived: "已到达", act_reading_normal: "读数恢复正常",
      act_back_online: "设备恢复在线", act_outage_notified: "数据库中断期间已通知",
      flooding: "消息过多", status_rate_limited: "消息过多",
      flooding_detail: "自{since}起，已丢弃{n}条", rate_limited: "限流",
    },
    en: {
      app_title: "Community duty desk", tab_queue: "Alerts", tab_devices: "Devices",
      tab_pending: "Pending devices", tab_stats: "Response times", logout: "Log out",
      queue_title: "Live alerts", queue_empty: "No open alerts", closed_title: "Recently closed",
      alarm_open: "Open now", alarm_text: "EMERGENCY ({n}): {what}", title_alarm: "[EMERGENCY] {what}",
      conn_live: "Live", conn_connecting: "Connecting…", conn_down: "Disconnected, reconnecting…",
      sound_on: "Sound: on", sound_off: "Sound is off: click to enable", lang_switch: "中文",
      state_open: "Open", state_acknowledged: "In progress", state_resolved: "Resolved",
      state_cancelled: "Cancelled", unreached: "Nobody reached", repeats: "{n} calls",
      age: "{m}m {s}s", age_h: "{h}h {m}m", no_resident: "No resident on record",
      resident: "Resident", address: "Address", phone: "Phone", medical: "Medical notes",
      contacts: "Emergency contacts", volunteers: "Assigned volunteers", lives_alone: "lives alone",
      hidden_contacts: "Contact details are shown to duty, admin and responder roles only",
      device: "Device", battery: "Battery", last_seen: "Last seen", opened: "Opened",
      acked_by: "Taken by", actions: "Actions", ack: "Acknowledge (I take it)", assign: "Assign",
      assign_to: "Assign to", resolve: "Resolve", outcome: "Outcome", note: "Note",
      note_ph: "What happened (optional)", add_note: "Add note", timeline: "Timeline", close: "Close",
      on_duty: "on duty", off_duty: "off duty", load: "{n} active",
      done_ack: "Acknowledged", done_assign: "Assigned", done_resolve: "Alert resolved",
      done_note: "Note added", done_adopt: "Device registered", filter_status: "Status",
      filter_type: "Type", filter_search: "Search", status_all: "All", status_offline: "Offline",
      status_low_battery: "Low battery", status_never_seen: "Never seen", status_ok: "OK",
      type_all: "All types", col_device: "Device", col_type: "Type", col_place: "Place",
      col_seen: "Last seen", col_battery: "Battery", col_status: "Status", online: "Online",
      offline: "Offline", never: "Never seen", low_battery: "Low battery",
      more_rows: "Showing the first {n}; use the filters to narrow down",
      readings: "Readings", range_24h: "24 hours", range_7d: "7 days",
      no_readings: "No readings in this range", no_metrics: "No readings in the last 30 days",
      pending_title: "Pending devices",
      pending_hint: "Messages from unregistered devices are kept here; they raise alerts once registered.",
      pending_none: "No pending devices", first_seen: "First seen", messages: "Messages",
      sos_count: "SOS", last_kind: "Last message", adopt: "Register", name: "Name",
      resident_id: "Resident id", building: "Bldg", unit: "Unit", room: "Room",
      pending_sos: "SOS from unregistered device(s): {ids} (check and register)",
      stats_title: "Time to acknowledge (last 7 days)", period: "Day", priority: "Priority",
      alerts: "Alerts", acknowledged: "Acknowledged", p50: "Median", p90: "90th pct",
      within_60: "≤ 60 s", within_180: "≤ 180 s", all: "All", seconds: "{n} s",
      error: "Failed: {msg}", view: "Open", minutes_ago: "{n} min ago", hours_ago: "{n} h ago",
      days_ago: "{n} d ago", just_now: "just now", system: "system",
      pick_alert: "Pick an alert on the left to see the resident and act on it.",
      act_opened: "Opened", act_repeat: "Called again", act_step: "Escalation step",
      act_notify: "Notification", act_accepted: "Accepted", act_declined: "Declined",
      act_acknowledged: "Acknowledged by the desk", act_assigned: "Assigned",
      act_resolved: "Resolved", act_cancelled_by_cancel: "Cancelled by the resident",
      act_cancelled_by_restore: "Sensor restored, cancelled", act_cancel: "Resident cancel (late)",
      act_restore: "Sensor restored", act_device_feedback: "Device feedback",
      act_step_unreached: "Nobody reached", act_note: "Note", act_arrived: "Arrived",
      act_reading_normal: "Reading back to normal", act_back_online: "Device back online",
      act_outage_notified: "Notified during database outage",
      flooding: "Flooding", status_rate_limited: "Flooding",
      flooding_detail: "since {since}, {n} dropped", rate_limited: "Rate limit",
    },
  };

  const PRIORITY_RANK = { P1: 1, P2: 2, P3: 3 };
  const CHIME_EVERY_MS = 8000;
  const FLASH_EVERY_MS = 1000;
  const MAX_CLOSED = 12;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    lang: initialLang(),
    me: null,
    meta: null,
    alerts: new Map(), // active alerts by id
    closed: [], // recently closed, newest first
    selected: null,
    detail: null,
    actionsKey: null,
    drafts: {},
    responders: null,
    respondersAt: 0,
    devices: [],
    deviceSel: null,
    chartRange: "24h",
    chartMetric: null,
    pending: [],
    tab: "queue",
    audio: null,
    chimes: 0,
    alarmIds: new Set(),
    baseTitle: document.title,
  };

  // -- small helpers ------------------------------------------------------------------------
  function initialLang() {
    const fromUrl = new URLSearchParams(location.search).get("lang");
    if (fromUrl === "en" || fromUrl === "zh") return fromUrl;
    try {
      return localStorage.getItem("scgw.lang") === "en" ? "en" : "zh";
    } catch (_) {
      return "zh";
    }
  }

  function t(key, vars) {
    let text = I18N[state.lang][key] ?? I18N.zh[key] ?? key;
    for (const [k, v] of Object.entries(vars || {})) text = text.replaceAll(`{${k}}`, String(v));
    return text;
  }

  function L(labels) {
    if (!labels) return "";
    return labels[state.lang] || labels.zh || "";
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  function fmtTime(iso, withDate) {
    if (!iso) return "—";
    const opts = { timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit", second: "2-digit",
      hour12: false };
    if (withDate) Object.assign(opts, { month: "2-digit", day: "2-digit" });
    return new Intl.DateTimeFormat(state.lang === "en" ? "en-GB" : "zh-CN", opts).format(new Date(iso));
  }

  function age(iso) {
    const secs = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    const h = Math.floor(secs / 3600);
    const m = Math.floor((secs % 3600) / 60);
    return h > 0 ? t("age_h", { h, m }) : t("age", { m, s: secs % 60 });
  }

  function ago(iso) {
    if (!iso) return t("never");
    const mins = Math.floor((Date.now() - Date.parse(iso)) / 60000);
    if (mins < 1) return t("just_now");
    if (mins < 60) return t("minutes_ago", { n: mins });
    if (mins < 1440) return t("hours_ago", { n: Math.floor(mins / 60) });
    return t("days_ago", { n: Math.floor(mins / 1440) });
  }

  function toast(text, isError) {
    const box = $("toast");
    box.textContent = text;
    box.className = isError ? "toast error" : "toast";
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, isError ? 6000 : 2500);
  }

  // "user:zhang" → "zhang"; "responder:v-1" or a bare responder id → the responder's name.
  function person(actor) {
    if (!actor) return "";
    if (actor === "system") return t("system");
    const cut = actor.indexOf(":");
    const kind = cut < 0 ? "responder" : actor.slice(0, cut);
    const rest = cut < 0 ? actor : actor.slice(cut + 1);
    if (kind === "user") return rest;
    if (kind === "device") return `${t("device")} ${rest}`;
    if (kind === "responder") {
      const known = (state.responders || []).find((r) => r.responder_id === rest);
      return known ? known.name : rest;
    }
    return actor;
  }

  function can(perm) {
    return !!state.me && state.me.perms.includes(perm);
  }

  class ApiError extends Error {}

  async function api(path, options) {
    const opts = Object.assign({ method: "GET", credentials: "same-origin", headers: {} }, options);
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    if (opts.method !== "GET") {
      // The session cookie alone never authorises a change: the CSRF token must come too.
      opts.headers["X-CSRF-Token"] = state.me ? state.me.csrf_token || "" : "";
      if (opts.body !== undefined) {
        opts.headers["Content-Type"] = "application/json";
        opts.body = JSON.stringify(opts.body);
      }
    }
    const res = await fetch(path, opts);
    if (res.status === 401) {
      location.href = `/login?lang=${state.lang}`;
      throw new ApiError("401");
    }
    const body = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) {
      const msg = (body && (body.message || (typeof body.detail === "string" && body.detail)))
        || `HTTP ${res.status}`;
      throw new ApiError(msg);
    }
    return body;
  }

  async function act(fn, doneKey) {
    try {
      const result = await fn();
      if (doneKey) toast(t(doneKey));
      return result;
    } catch (err) {
      toast(t("error", { msg: err.message }), true);
      return null;
    }
  }

  // -- sound and the alarm -------------------------------------------------------------------
  function audio() {
    if (!state.audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      state.audio = new Ctx();
    }
    return state.audio;
  }

  function soundReady() {
    return !!state.audio && state.audio.state === "running";
  }

  function renderSound() {
    const btn = $("sound");
    const ready = soundReady();
    btn.textContent = ready ? t("sound_on") : t("sound_off");
    btn.classList.toggle("off", !ready);
  }

  function unlockAudio() {
    // Browsers start audio only after a click on the page: every click is a chance to.
    const ctx = audio();
    if (ctx && ctx.state === "suspended") ctx.resume().then(renderSound, renderSound);
    else renderSound();
  }

  function chime() {
    state.chimes += 1;
    document.body.dataset.chimes = String(state.chimes);
    const ctx = audio();
    if (!ctx) return;
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    const start = ctx.currentTime + 0.02;
    [[880, 0], [660, 0.28], [880, 0.56], [660, 0.84]].forEach(([freq, at]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, start + at);
      gain.gain.exponentialRampToValueAtTime(0.25, start + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.25);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + at);
      osc.stop(start + at + 0.27);
    });
  }

  function p1Open() {
    return sortedAlerts().filter((a) => a.priority === "P1" && a.state === "open");
  }

  function describe(alert) {
    const who = [alert.resident_name, L(alert.address)].filter(Boolean).join(" ");
    return [L(alert.kind_label), who].filter(Boolean).join(" · ");
  }

  function renderAlarm() {
    const urgent = p1Open();
    const banner = $("alarm");
    const fresh = urgent.filter((a) => !state.alarmIds.has(a.id));
    state.alarmIds = new Set(urgent.map((a) => a.id));
    if (urgent.length === 0) {
      banner.hidden = true;
      document.body.classList.remove("p1-alarm");
      return;
    }
    banner.hidden = false;
    document.body.classList.add("p1-alarm");
    $("alarm-text").textContent = t("alarm_text", { n: urgent.length, what: describe(urgent[0]) });
    if (fresh.length > 0) chime(); // a new P1 sounds at once, then every CHIME_EVERY_MS
  }

  function alarmTick() {
    if (p1Open().length > 0) chime();
  }

  function titleTick() {
    const urgent = p1Open();
    if (urgent.length === 0) {
      document.title = t("app_title");
      return;
    }
    titleTick.on = !titleTick.on;
    document.title = titleTick.on
      ? t("title_alarm", { what: describe(urgent[0]) })
      : `(${urgent.length}) ‼‼‼ ${t("app_title")}`;
  }

  // -- the queue --------------------------------------------------------------------------------
  function sortedAlerts() {
    return [...state.alerts.values()].sort((a, b) =>
      (PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority])
      || (Date.parse(a.opened_at) - Date.parse(b.opened_at)));
  }

  function queueItem(alert) {
    const chips = [el("span", { class: `chip ${alert.state}`, text: t(`state_${alert.state}`) })];
    if (alert.count > 1) chips.push(el("span", { class: "chip", text: t("repeats", { n: alert.count }) }));
    if (alert.unreached) chips.push(el("span", { class: "chip warn", text: t("unreached") }));
    const who = [alert.resident_name || alert.device_name || alert.device_id, L(alert.address)]
      .filter(Boolean).join(" · ");
    const meta = [fmtTime(alert.opened_at, true)];
    if (alert.acked_by) meta.push(`${t("acked_by")}: ${person(alert.acked_by)}`);
    return el("li", {
      class: `qi ${alert.priority} ${alert.state}${state.selected === alert.id ? " selected" : ""}`,
      dataset: { id: alert.id, priority: alert.priority, state: alert.state },
      tabindex: "0",
      onclick: () => select(alert.id),
      onkeydown: (e) => { if (e.key === "Enter") select(alert.id); },
    },
    el("span", { class: `badge ${alert.priority}`, text: L(alert.priority_label) }),
    el("span", { class: "kind" }, L(alert.kind_label), ...chips),
    el("span", { class: "age", dataset: { since: alert.opened_at }, text: alert.state === "open" || alert.state === "acknowledged" ? age(alert.opened_at) : "" }),
    el("span", { class: "who", text: who }),
    el("span", { class: "meta", text: meta.join(" · ") }));
  }

  function renderQueue() {
    const list = sortedAlerts();
    $("queue").replaceChildren(...list.map(queueItem));
    $("queue-empty").hidden = list.length > 0;
    $("queue-count").textContent = list.length ? `(${list.length})` : "";
    $("closed").replaceChildren(...state.closed.map(queueItem));
    renderAlarm();
  }

  function upsert(alert) {
    const active = alert.state === "open" || alert.state === "acknowledged";
    if (active) {
      state.alerts.set(alert.id, alert);
      state.closed = state.closed.filter((a) => a.id !== alert.id);
    } else {
      state.alerts.delete(alert.id);
      state.closed = [alert, ...state.closed.filter((a) => a.id !== alert.id)].slice(0, MAX_CLOSED);
    }
  }

  // -- the live stream ---------------------------------------------------------------------------
  function connect() {
    const source = new EventSource("/api/v1/alerts/stream");
    const conn = $("conn");
    const setConn = (s) => { conn.dataset.state = s; conn.textContent = t(`conn_${s === "live" ? "live" : s === "down" ? "down" : "connecting"}`); };
    setConn("connecting");
    source.onopen = () => setConn("live");
    source.onerror = () => setConn(source.readyState === EventSource.CLOSED ? "down" : "connecting");
    source.addEventListener("snapshot", (e) => {
      const data = JSON.parse(e.data);
      state.alerts = new Map(data.alerts.map((a) => [a.id, a]));
      setConn("live");
      renderQueue();
      if (state.selected) loadDetail(state.selected);
    });
    source.addEventListener("alert", (e) => {
      const data = JSON.parse(e.data);
      upsert(data.alert);
      renderQueue();
      if (state.selected === data.alert.id) loadDetail(data.alert.id);
    });
    // EventSource reconnects by itself (sending Last-Event-ID); if the server refused it
    // outright (logged out, restarted without our session), start over in a while.
    setInterval(() => {
      if (source.readyState === EventSource.CLOSED) location.reload();
    }, 15000);
  }

  // -- one alert ------------------------------------------------------------------------------------
  async function select(id) {
    state.selected = id;
    renderQueue();
    await loadDetail(id);
  }

  async function loadDetail(id) {
    const detail = await act(() => api(`/api/v1/alerts/${encodeURIComponent(id)}`));
    if (!detail || state.selected !== id) return;
    state.detail = detail;
    upsert(detail);
    renderQueue();
    await renderDetail();
  }

  function kv(rows) {
    return el("dl", { class: "kv" }, rows.filter(Boolean).flatMap(([k, v, cls]) =>
      [el("dt", { text: k }), el("dd", { class: cls || null }, v)]));
  }

  function residentCard(r) {
    if (!r) return el("div", { class: "card" }, el("h3", { text: t("resident") }), t("no_resident"));
    const rows = [
      [t("resident"), r.name + (r.lives_alone ? `（${t("lives_alone")}）` : "")],
      [t("address"), L(r.address) || "—"],
    ];
    if (r.contact_details) {
      const phone = r.phone ? el("a", { href: `tel:${r.phone.replace(/[^0-9+]/g, "")}`, text: r.phone }) : "—";
      rows.push([t("phone"), phone]);
      if (r.medical_notes) rows.push([t("medical"), r.medical_notes, "medical"]);
      if (r.contacts.length) {
        rows.push([t("contacts"), el("span", {}, r.contacts.map((c, i) => [
          i ? "；" : "", c.name, " ",
          c.phone ? el("a", { href: `tel:${c.phone.replace(/[^0-9+]/g, "")}`, text: c.phone }) : "",
        ]))]);
      }
    }
    if (r.responders.length) {
      rows.push([t("volunteers"), r.responders.map((v) => v.name + (v.phone ? ` ${v.phone}` : "")).join("；")]);
    }
    return el("div", { class: "card", id: "resident-card" },
      el("h3", { text: t("resident") }), kv(rows),
      r.contact_details ? null : el("p", { class: "hint", text: t("hidden_contacts") }));
  }

  function deviceCard(d, alert) {
    if (!d && !alert.device_id) return null;
    const rows = [[t("device"), d && d.name ? `${d.name} (${d.device_id})` : alert.device_id]];
    if (d) {
      rows.push([t("battery"), d.battery === null ? "—" : `${d.battery}%`, d.low_battery ? "bad" : ""]);
      rows.push([t("last_seen"), d.last_seen ? `${fmtTime(d.last_seen, true)}（${ago(d.last_seen)}）` : t("never")]);
    }
    return el("div", { class: "card" }, el("h3", { text: t("device") }), kv(rows));
  }

  async function responders() {
    if (!state.responders || Date.now() - state.respondersAt > 30000) {
      const page = await api("/api/v1/responders?limit=1000");
      state.responders = page.items;
      state.respondersAt = Date.now();
    }
    return state.responders;
  }

  async function actionsCard(a) {
    const active = a.state === "open" || a.state === "acknowledged";
    const parts = [];
    if (active && a.state === "open" && can("alert_act")) {
      parts.push(el("div", { class: "row" }, el("button", {
        id: "btn-ack", class: "btn ack", type: "button", text: t("ack"),
        onclick: async (e) => {
          e.target.disabled = true;
          const res = await act(() => api(`/api/v1/alerts/${a.id}/ack`, { method: "POST" }), "done_ack");
          if (res) upsert(res);
          await loadDetail(a.id);
        },
      })));
    }
    if (active && can("alert_assign")) {
      const select = el("select", { id: "assign-to", "aria-label": t("assign_to") });
      try {
        const list = await responders();
        const sorted = [...list].sort((x, y) => (y.on_duty_now - x.on_duty_now) || (x.active_alerts - y.active_alerts));
        for (const r of sorted) {
          select.append(el("option", { value: r.responder_id,
            text: `${r.name}（${r.role}）· ${r.on_duty_now ? t("on_duty") : t("off_duty")} · ${t("load", { n: r.active_alerts })}` }));
        }
      } catch (_) { /* the list is optional: the desk can still ack and resolve */ }
      parts.push(el("div", { class: "row" }, select, el("button", {
        id: "btn-assign", class: "btn", type: "button", text: t("assign"),
        onclick: async () => {
          const res = await act(() => api(`/api/v1/alerts/${a.id}/assign`,
            { method: "POST", body: { responder_id: select.value } }), "done_assign");
          if (res) upsert(res);
          await loadDetail(a.id);
        },
      })));
    }
    if (active && can("alert_act")) {
      const outcome = bindDraft(a.id, el("select", { id: "resolve-outcome", "aria-label": t("outcome") },
        Object.entries(state.meta.outcomes).map(([k, v]) => el("option", { value: k, text: L(v) }))), "outcome");
      const note = bindDraft(a.id, el("textarea", { id: "resolve-note", placeholder: t("note_ph"), "aria-label": t("note") }), "note");
      parts.push(el("div", {}, el("div", { class: "row" }, el("span", { text: t("outcome") }), outcome),
        note, el("div", { class: "row" }, el("button", {
          id: "btn-resolve", class: "btn resolve", type: "button", text: t("resolve"),
          onclick: async () => {
            const body = { outcome: outcome.value };
            if (note.value.trim()) body.note = note.value.trim();
            const res = await act(() => api(`/api/v1/alerts/${a.id}/resolve`, { method: "POST", body }), "done_resolve");
            if (res) { upsert(res); delete state.drafts[a.id]; }
            renderQueue();
            await loadDetail(a.id);
          },
        }))));
    }
    if (!active && can("alert_act")) {
      const note = bindDraft(a.id, el("textarea", { id: "note-text", placeholder: t("note_ph"), "aria-label": t("note") }), "extra");
      parts.push(el("div", {}, note, el("div", { class: "row" }, el("button", {
        id: "btn-note", class: "btn quiet", type: "button", text: t("add_note"),
        onclick: async () => {
          if (!note.value.trim()) return;
          const res = await act(() => api(`/api/v1/alerts/${a.id}/notes`, { method: "POST", body: { text: note.value.trim() } }), "done_note");
          if (res) {
            note.value = "";
            delete draft(a.id).extra;
            await loadDetail(a.id);
          }
        },
      }))));
    }
    if (!parts.length) return null;
    return el("div", { class: "card actions" }, el("h3", { text: t("actions") }), parts);
  }

  function timelineDetail(entry) {
    const d = entry.detail || {};
    const bits = [];
    if (d.text) bits.push(d.text);
    if (d.outcome) bits.push(L(state.meta.outcomes[d.outcome]) || d.outcome);
    if (d.note) bits.push(state.lang === "zh" && d.note_zh ? d.note_zh : d.note);
    if (d.name) bits.push(d.name);
    if (d.recipient) bits.push(`${d.recipient} ${d.ok ? "✓" : "✗"}${d.detail ? ` ${d.detail}` : ""}`);
    if (d.cmd) bits.push(`${d.cmd} ${d.sent ? "✓" : "✗"}`);
    if (d.why && !d.recipient) bits.push(d.why);
    if (d.via) bits.push(d.via);
    if (entry.action === "outage_notified") bits.push(`${d.reached ?? 0}/${(d.targets || []).length}`);
    if (entry.action === "step") bits.push(`#${(d.step ?? 0) + 1}: ${d.reached ?? 0}/${(d.targets || []).length}`);
    return bits.join(" · ");
  }

  function renderPlaceholder() {
    const box = $("detail");
    box.classList.add("placeholder");
    box.replaceChildren(el("p", { class: "empty", text: t("pick_alert") }));
    box.hidden = false;
  }

  // The panel is made of parts that are replaced one by one: a live update (a notice sent, a
  // note added) must not wipe the note the desk is typing or move the focus out of it.
  const PARTS = ["head", "facts", "resident", "device", "actions", "timeline"];

  function detailParts(box) {
    if (!box.querySelector(":scope > .part-head")) {
      box.replaceChildren(...PARTS.map((p) => el("div", { class: `part-${p}` })));
    }
    return Object.fromEntries(PARTS.map((p) => [p, box.querySelector(`:scope > .part-${p}`)]));
  }

  async function renderDetail() {
    const a = state.detail;
    const box = $("detail");
    if (!a) { renderPlaceholder(); return; }
    if (box.classList.contains("placeholder")) {
      box.classList.remove("placeholder");
      box.replaceChildren();
      state.actionsKey = null;
    }
    const parts = detailParts(box);
    parts.head.replaceChildren(el("header", {},
      el("span", { class: `badge ${a.priority}`, text: L(a.priority_label) }),
      el("h2", { id: "detail-title", text: L(a.kind_label) }),
      el("span", { id: "detail-state", class: `chip ${a.state}`, text: t(`state_${a.state}`) }),
      el("button", { class: "close", type: "button", text: t("close"), onclick: () => {
        state.selected = null; state.detail = null; renderPlaceholder(); renderQueue();
      } })));
    parts.facts.replaceChildren(kv([
      [t("opened"), `${fmtTime(a.opened_at, true)}（${age(a.opened_at)}）`],
      a.acked_by ? [t("acked_by"), `${person(a.acked_by)} ${fmtTime(a.acked_at, false)}`] : null,
      a.outcome ? [t("outcome"), L(state.meta.outcomes[a.outcome])] : null,
      a.note ? [t("note"), a.note] : null,
    ]));
    parts.resident.replaceChildren(residentCard(a.resident));
    parts.device.replaceChildren(deviceCard(a.device, a) || "");
    const key = `${a.id}|${a.state}|${state.lang}`;
    if (key !== state.actionsKey) {
      state.actionsKey = key;
      parts.actions.replaceChildren((await actionsCard(a)) || "");
    }
    const timeline = el("ol", { class: "timeline", id: "timeline" }, a.timeline.map((e) => el("li", {},
      el("time", { text: fmtTime(e.at, false) }),
      el("span", {}, el("span", { class: "what", text: t(`act_${e.action}`) === `act_${e.action}` ? e.action : t(`act_${e.action}`) }),
        " ", el("span", { class: "sub", text: `${person(e.actor)}${timelineDetail(e) ? ` · ${timelineDetail(e)}` : ""}` })))));
    parts.timeline.replaceChildren(el("div", { class: "card" }, el("h3", { text: t("timeline") }), timeline));
    box.hidden = false;
  }

  // What the desk typed or picked, per alert: kept when the form is rebuilt (the alert moved
  // from open to acknowledged while someone was writing the closing note).
  function draft(alertId) {
    state.drafts[alertId] = state.drafts[alertId] || {};
    return state.drafts[alertId];
  }

  function bindDraft(alertId, node, field) {
    const saved = draft(alertId)[field];
    if (saved !== undefined) node.value = saved;
    node.addEventListener("input", () => { draft(alertId)[field] = node.value; });
    node.addEventListener("change", () => { draft(alertId)[field] = node.value; });
    return node;
  }

  // -- devices ------------------------------------------------------------------------------------
  async function loadDevices() {
    const params = new URLSearchParams({ limit: "500" });
    if ($("dev-status").value) params.set("status", $("dev-status").value);
    if ($("dev-type").value) params.set("type", $("dev-type").value);
    if ($("dev-q").value.trim()) params.set("q", $("dev-q").value.trim());
    const page = await act(() => api(`/api/v1/devices?${params}`));
    if (!page) return;
    state.devices = page.items;
    $("devices-more").hidden = page.next_offset === null;
    $("devices-more").textContent = t("more_rows", { n: page.items.length });
    renderDevices();
  }

  // A device over its telemetry rate limit: shown to technicians until it is quiet again.
  function floodBadge(d) {
    return el("span", { class: "badge flood", title: t("flooding_detail", { since: fmtTime(d.rate_limited_since, true), n: d.rejected_recently }), text: t("flooding") });
  }

  function deviceStatus(d) {
    const flood = d.rate_limited ? [" ", floodBadge(d)] : [];
    if (d.never_seen) return el("span", {}, t("never"), flood);
    const bits = [d.offline ? el("span", { class: "bad", text: t("offline") }) : el("span", { class: "good", text: t("online") })];
    if (d.low_battery) bits.push(" ", el("span", { class: "bad", text: t("low_battery") }));
    return el("span", {}, bits, flood);
  }

  function renderDevices() {
    const head = el("thead", {}, el("tr", {}, ["col_device", "col_type", "col_place", "col_seen", "col_battery", "col_status"].map((k) => el("th", { text: t(k) }))));
    const body = el("tbody", {}, state.devices.map((d) => el("tr", {
      class: state.deviceSel === d.device_id ? "selected" : null,
      dataset: { id: d.device_id },
      onclick: () => selectDevice(d.device_id),
    },
    el("td", {}, el("strong", { text: d.device_id }), d.name ? el("div", { class: "hint", text: d.name }) : null),
    el("td", { text: L(d.type_label) }),
    el("td", { text: L(d.address) || "—" }),
    el("td", { text: ago(d.last_seen) }),
    el("td", { class: d.low_battery ? "bad" : null, text: d.battery === null ? "—" : `${d.battery}%` }),
    el("td", {}, deviceStatus(d)))));
    $("devices").replaceChildren(head, body);
  }

  async function selectDevice(id) {
    state.deviceSel = id;
    renderDevices();
    const d = await act(() => api(`/api/v1/devices/${encodeURIComponent(id)}`));
    if (!d) return;
    if (!d.metrics.includes(state.chartMetric)) {
      // The health readings first: battery and signal are on the table already.
      const preferred = ["temperature", "heart_rate", "gas_ppm", "co_ppm", "humidity"];
      state.chartMetric = preferred.find((m) => d.metrics.includes(m)) || d.metrics[0] || null;
    }
    const panel = $("device-panel");
    const metricSel = el("select", { id: "chart-metric", onchange: (e) => { state.chartMetric = e.target.value; drawChart(d); } },
      d.metrics.map((m) => el("option", { value: m, text: m, selected: m === state.chartMetric })));
    const rangeSel = el("select", { id: "chart-range", onchange: (e) => { state.chartRange = e.target.value; drawChart(d); } },
      el("option", { value: "24h", text: t("range_24h"), selected: state.chartRange === "24h" }),
      el("option", { value: "7d", text: t("range_7d"), selected: state.chartRange === "7d" }));
    panel.replaceChildren(
      el("header", {}, el("h2", { text: `${d.name || d.device_id}` }),
        el("button", { class: "close", type: "button", text: t("close"), onclick: () => { panel.hidden = true; state.deviceSel = null; renderDevices(); } })),
      kv([[t("device"), d.device_id], [t("col_type"), L(d.type_label)], [t("address"), L(d.address) || "—"],
        [t("battery"), d.battery === null ? "—" : `${d.battery}%`, d.low_battery ? "bad" : ""],
        [t("last_seen"), d.last_seen ? `${fmtTime(d.last_seen, true)}（${ago(d.last_seen)}）` : t("never")],
        [t("col_status"), deviceStatus(d)],
        d.rate_limited ? [t("rate_limited"), t("flooding_detail", { since: fmtTime(d.rate_limited_since, true), n: d.rejected_recently }), "bad"] : null]),
      el("h3", { text: t("readings") }),
      d.metrics.length ? el("div", { class: "chart-tools" }, metricSel, rangeSel) : el("p", { class: "empty", text: t("no_metrics") }),
      el("div", { id: "chart" }));
    panel.hidden = false;
    if (d.metrics.length) drawChart(d);
  }

  async function drawChart(d) {
    const spanMs = state.chartRange === "7d" ? 7 * 86400000 : 86400000;
    const bucket = state.chartRange === "7d" ? "1h" : "5m";
    const until = new Date();
    const since = new Date(until.getTime() - spanMs);
    const params = new URLSearchParams({ metric: state.chartMetric, bucket, from: since.toISOString(), to: until.toISOString() });
    const data = await act(() => api(`/api/v1/devices/${encodeURIComponent(d.device_id)}/readings?${params}`));
    const box = $("chart");
    if (!data || !box) return;
    const series = data.series[0];
    if (!series || series.points.length === 0) {
      box.replaceChildren(el("p", { class: "empty", text: t("no_readings") }));
      return;
    }
    box.replaceChildren(lineChart(series.points, since.getTime(), until.getTime()));
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // avg as a line, min..max as a band behind it; time on x, value on y.
  function lineChart(points, t0, t1) {
    const W = 640, H = 220, left = 48, right = 10, top = 10, bottom = 26;
    let lo = Math.min(...points.map((p) => p.min));
    let hi = Math.max(...points.map((p) => p.max));
    if (hi === lo) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    const x = (ms) => left + ((ms - t0) / (t1 - t0)) * (W - left - right);
    const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (H - top - bottom);
    const pts = points.map((p) => [x(Date.parse(p.time)), p]);
    const line = pts.map(([px, p]) => `${px.toFixed(1)},${y(p.avg).toFixed(1)}`).join(" ");
    const band = [...pts.map(([px, p]) => `${px.toFixed(1)},${y(p.max).toFixed(1)}`),
      ...[...pts].reverse().map(([px, p]) => `${px.toFixed(1)},${y(p.min).toFixed(1)}`)].join(" ");
    const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1));
    return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": t("readings") },
      svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom }),
      svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W - right, y2: H - bottom }),
      svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, fmt(hi - pad)),
      svg("text", { x: left - 6, y: H - bottom, "text-anchor": "end" }, fmt(lo + pad)),
      svg("text", { x: left, y: H - 6 }, fmtTime(new Date(t0).toISOString(), true)),
      svg("text", { x: W - right, y: H - 6, "text-anchor": "end" }, fmtTime(new Date(t1).toISOString(), true)),
      svg("polygon", { class: "band", points: band }),
      svg("polyline", { class: "line", points: line }),
      // Dots where readings are sparse: one bucket alone would draw no line at all.
      ...(pts.length <= 60 ? pts.map(([px, p]) => svg("circle", { class: "dot", cx: px.toFixed(1), cy: y(p.avg).toFixed(1), r: 3 })) : []));
  }

  // -- pending devices --------------------------------------------------------------------------------
  async function loadPending() {
    const list = await api("/api/v1/pending-devices").catch(() => null);
    if (!list) return;
    state.pending = list;
    const calling = list.filter((p) => p.sos_count > 0);
    const strip = $("pending-sos");
    strip.hidden = calling.length === 0;
    strip.textContent = t("pending_sos", { ids: calling.map((p) => p.device_id).join(", ") });
    if (state.tab === "pending") renderPending();
  }

  function adoptForm(p) {
    const type = el("select", { name: "type", "aria-label": t("col_type") },
      Object.entries(state.meta.device_types).map(([k, v]) => el("option", { value: k, text: L(v) })));
    const field = (name, key) => el("input", { name, placeholder: t(key), "aria-label": t(key) });
    const inputs = [field("name", "name"), field("resident_id", "resident_id"), field("building", "building"), field("unit", "unit"), field("room", "room")];
    return el("form", { class: "adopt", onsubmit: async (e) => {
      e.preventDefault();
      const body = { type: type.value };
      for (const input of inputs) if (input.value.trim()) body[input.name] = input.value.trim();
      const res = await act(() => api(`/api/v1/pending-devices/${encodeURIComponent(p.device_id)}/adopt`, { method: "POST", body }), "done_adopt");
      if (res) await loadPending();
    } }, type, inputs, el("button", { class: "btn", type: "submit", text: t("adopt") }));
  }

  function renderPending() {
    const box = $("pending");
    if (!state.pending.length) { box.replaceChildren(el("p", { class: "empty", text: t("pending_none") })); return; }
    box.replaceChildren(...state.pending.map((p) => el("div", { class: "pending-item", dataset: { id: p.device_id } },
      el("strong", { text: p.device_id }),
      p.sos_count > 0 ? el("span", { class: "chip warn", text: `${t("sos_count")} ×${p.sos_count}` }) : null,
      kv([[t("first_seen"), fmtTime(p.first_seen, true)], [t("last_seen"), `${fmtTime(p.last_seen, true)}（${ago(p.last_seen)}）`],
        [t("messages"), String(p.messages)], [t("last_kind"), p.last_kind]]),
      el("code", { text: p.last_payload }),
      can("devices") ? adoptForm(p) : null)));
  }

  // -- stats --------------------------------------------------------------------------------------------
  async function loadStats() {
    const until = new Date();
    const since = new Date(until.getTime() - 7 * 86400000);
    const params = new URLSearchParams({ period: "day", from: since.toISOString(), to: until.toISOString() });
    const data = await act(() => api(`/api/v1/stats/response?${params}`));
    if (!data) return;
    const secs = (v) => (v === null ? "—" : t("seconds", { n: Math.round(v) }));
    const pct = (v) => (v === null ? "—" : `${Math.round(v * 100)}%`);
    const day = (iso) => (iso ? new Intl.DateTimeFormat(state.lang === "en" ? "en-GB" : "zh-CN", { timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit", weekday: "short" }).format(new Date(iso)) : t("all"));
    $("stats").replaceChildren(
      el("thead", {}, el("tr", {}, ["period", "priority", "alerts", "acknowledged", "p50", "p90", "within_60", "within_180"].map((k) => el("th", { text: t(k) })))),
      el("tbody", {}, data.groups.map((g) => el("tr", {},
        el("td", { text: day(g.period_start) }),
        el("td", {}, g.priority === "all" ? t("all") : el("span", { class: `badge ${g.priority}`, text: L(state.meta.priorities[g.priority]) })),
        el("td", { text: String(g.alerts) }), el("td", { text: String(g.acknowledged) }),
        el("td", { text: secs(g.p50_s) }), el("td", { text: secs(g.p90_s) }),
        el("td", { text: pct(g.within_60s) }), el("td", { text: pct(g.within_180s) })))));
  }

  // -- page chrome -----------------------------------------------------------------------------------------
  function showTab(name) {
    state.tab = name;
    for (const btn of document.querySelectorAll(".tabs button")) btn.setAttribute("aria-selected", String(btn.dataset.tab === name));
    for (const sec of document.querySelectorAll("main > .tab")) sec.hidden = sec.id !== `tab-${name}`;
    if (name === "devices") loadDevices();
    if (name === "pending") loadPending().then(renderPending);
    if (name === "stats") loadStats();
  }

  function renderStatic() {
    document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    $("lang").textContent = t("lang_switch");
    $("who").textContent = state.me ? `${state.me.name} · ${state.me.role}` : "";
    const typeSel = $("dev-type");
    const current = typeSel.value;
    typeSel.replaceChildren(el("option", { value: "", text: t("type_all") }),
      ...Object.entries(state.meta ? state.meta.device_types : {}).map(([k, v]) => el("option", { value: k, text: L(v) })));
    typeSel.value = current;
    const conn = $("conn");
    conn.textContent = t(`conn_${conn.dataset.state === "live" ? "live" : conn.dataset.state === "down" ? "down" : "connecting"}`);
    renderSound();
  }

  function renderAll() {
    renderStatic();
    renderQueue();
    renderDetail();
    if (state.tab === "devices") renderDevices();
    if (state.tab === "pending") renderPending();
    if (state.tab === "stats") loadStats();
    titleTick();
  }

  function switchLang() {
    state.lang = state.lang === "zh" ? "en" : "zh";
    try { localStorage.setItem("scgw.lang", state.lang); } catch (_) { /* private mode */ }
    const url = new URL(location.href);
    url.searchParams.delete("lang");
    history.replaceState(null, "", url);
    renderAll();
  }

  async function logout() {
    await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": state.me ? state.me.csrf_token || "" : "" } }).catch(() => null);
    location.href = `/login?lang=${state.lang}`;
  }

  function refreshAges() {
    for (const node of document.querySelectorAll(".queue:not(.closed) .age[data-since]")) node.textContent = age(node.dataset.since);
  }

  async function start() {
    document.addEventListener("click", unlockAudio, true);
    document.addEventListener("keydown", unlockAudio, true);
    $("lang").addEventListener("click", switchLang);
    $("logout").addEventListener("click", logout);
    $("sound").addEventListener("click", () => { unlockAudio(); chime(); });
    $("alarm-open").addEventListener("click", () => { showTab("queue"); const first = p1Open()[0]; if (first) select(first.id); });
    for (const btn of document.querySelectorAll(".tabs button")) btn.addEventListener("click", () => showTab(btn.dataset.tab));
    $("dev-status").addEventListener("change", loadDevices);
    $("dev-type").addEventListener("change", loadDevices);
    let searchTimer = 0;
    $("dev-q").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadDevices, 300); });

    [state.me, state.meta] = await Promise.all([api("/api/v1/me"), api("/api/v1/meta")]);
    document.body.dataset.ready = "1";
    showTab("queue");
    renderAll();
    connect();
    loadPending();
    responders().then(renderQueue, () => {}); // names for "taken by"; optional
    setInterval(refreshAges, 1000);
    setInterval(titleTick, FLASH_EVERY_MS);
    setInterval(alarmTick, CHIME_EVERY_MS);
    setInterval(loadPending, 15000);
    setInterval(() => { if (state.tab === "devices") loadDevices(); }, 30000);
  }

  start().catch((err) => toast(t("error", { msg: err.message }), true));
})();
