// The live page's script (served at /page.js, so that the page needs no
// inline script and its Content-Security-Policy can forbid it).
"use strict";
const I18N = {
  zh: {
    title: "minewatch 煤矿安全监测预警", "k.evacuation": "撤人", "k.overlimit": "超限", "k.mine_offline": "断网",
    "k.point_offline": "断线", "k.data_anomaly": "数据异常", "k.falsification_suspect": "造假嫌疑",
    "k.suspected_illegal_production": "明停暗开", "k.overmanning": "超定员", "k.seal_alert": "电子封条", unacked: "未签收", connecting: "连接中…",
    live: "实时连接", lost: "连接中断, 重连中…", logout: "退出", feed: "实时报警", board: "矿井态势", tasks: "我的核查任务",
    pickmine: "点击矿井查看测点与曲线", noalerts: "暂无报警", notasks: "暂无任务", "col.kind": "类型", "col.mine": "煤矿",
    "col.point": "测点", "col.value": "数值 / 峰值", "col.threshold": "阈值", "col.start": "开始", "col.state": "状态",
    "col.action": "操作", "col.place": "位置", "col.current": "当前值", "col.alarm": "报警", "col.poweroff": "断电",
    "col.time": "时间", ack: "签收", dispose: "处置", close: "闭环", take: "接收", "s.active": "进行中", "s.cleared": "已解除",
    "h.unacknowledged": "未签收", "h.acknowledged": "已签收", "h.disposed": "已处置", "h.closed": "已闭环",
    "l.county": "县级", "l.city": "已升级市级", "l.province": "已升级省级", soundOn: "声音: 开", soundOff: "声音: 关",
    "st.normal": "正常", "st.overlimit": "超限", "st.evacuation": "撤人", "st.offline": "断网/断线",
    "st.stopped_active": "停产矿有活动", "st.falsification": "造假嫌疑", disposeNote: "处置情况 (必填):",
    contacted: "核实方式", cause: "原因", measures: "措施", result: "结果", submit: "提交反馈并闭环",
    due: "截止", overdue: "已超期", assignee: "负责人", evacBanner: "撤人报警", nopoints: "无测点",
    noTrend: "无曲线数据", planned: "计划内",
    "r.out_of_range": "超量程/无效值", "r.flat_line": "直线不变", "r.spike": "孤立跳变", "r.rate": "变化过快",
    "r.timestamp": "时间戳异常", "r.hugging": "贴线运行", "r.drop_after_approach": "临限突降",
    "r.interlock": "闭锁未动作", "r.uniform_noise": "均匀随机", "r.replayed": "数据回放",
    "r.neighbours_disagree": "相邻测点不一致",
  },
  en: {
    title: "minewatch coal-mine safety monitoring", "k.evacuation": "Evacuate", "k.overlimit": "Over limit",
    "k.mine_offline": "Mine offline", "k.point_offline": "Point offline", "k.data_anomaly": "Data anomaly",
    "k.falsification_suspect": "Falsification?", "k.suspected_illegal_production": "Illegal production?",
    "k.overmanning": "Overmanning", "k.seal_alert": "Seal alert", unacked: "Unacknowledged", connecting: "Connecting…", live: "Live",
    lost: "Connection lost, retrying…", logout: "Sign out", feed: "Live alerts", board: "Mines", tasks: "My duty tasks",
    pickmine: "Click a mine for its points and trends", noalerts: "No alerts", notasks: "No tasks",
    "col.kind": "Kind", "col.mine": "Mine", "col.point": "Point", "col.value": "Value / peak", "col.threshold": "Limit",
    "col.start": "Start", "col.state": "State", "col.action": "Action", "col.place": "Place", "col.current": "Now",
    "col.alarm": "Alarm", "col.poweroff": "Power-off", "col.time": "Time", ack: "Acknowledge", dispose: "Dispose",
    close: "Close", take: "Take", "s.active": "active", "s.cleared": "cleared", "h.unacknowledged": "unacknowledged",
    "h.acknowledged": "acknowledged", "h.disposed": "disposed", "h.closed": "closed", "l.county": "county",
    "l.city": "escalated: city", "l.province": "escalated: province", soundOn: "Sound: on", soundOff: "Sound: off",
    "st.normal": "normal", "st.overlimit": "over limit", "st.evacuation": "evacuation", "st.offline": "offline",
    "st.stopped_active": "stopped but active", "st.falsification": "falsification suspect",
    disposeNote: "What was done (required):", contacted: "Verified with", cause: "Cause", measures: "Measures",
    result: "Result", submit: "Submit feedback and close", due: "due", overdue: "overdue", assignee: "assignee",
    evacBanner: "EVACUATION", nopoints: "No points", noTrend: "No trend data", planned: "planned",
    "r.out_of_range": "out of range", "r.flat_line": "flat line", "r.spike": "spike", "r.rate": "too fast",
    "r.timestamp": "timestamps", "r.hugging": "hugging the limit", "r.drop_after_approach": "drop near the limit",
    "r.interlock": "interlock did not act", "r.uniform_noise": "uniform noise", "r.replayed": "replayed data",
    "r.neighbours_disagree": "neighbours disagree",
  },
};
let lang = localStorage.getItem("mw-lang") || "zh";
const t = (k) => (I18N[lang] && I18N[lang][k]) || I18N.zh[k] || k;
// A reason key the page has no words for is shown as the key itself.
const reasonName = (r) => (I18N[lang] && I18N[lang]["r." + r]) || I18N.zh["r." + r] || r;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (v) => (v == null || Number.isNaN(v) ? "-" : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)));
const time = (s) => (s ? new Date(s).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "");

const state = { me: null, mines: new Map(), alerts: new Map(), tasks: [], mine: null, point: null, points: [], trend: null };
let muted = localStorage.getItem("mw-muted") === "1";

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  $("mute").textContent = muted ? t("soundOff") : t("soundOn");
  renderAll();
}

async function api(path, opts = {}) {
  const headers = Object.assign({ "accept": "application/json" }, opts.headers || {});
  if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    if (state.me && state.me.csrf_token) headers["x-csrf-token"] = state.me.csrf_token;
  }
  const r = await fetch(path, { method: opts.method || "GET", headers, credentials: "same-origin",
                                body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

// ---- sound -------------------------------------------------------------
let audio = null;
function beep() {
  if (muted) return;
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const now = audio.currentTime;
    for (let i = 0; i < 3; i++) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.type = "square"; o.frequency.value = 880;
      g.gain.setValueAtTime(0.12, now + i * 0.35); g.gain.setValueAtTime(0, now + i * 0.35 + 0.2);
      o.connect(g); g.connect(audio.destination); o.start(now + i * 0.35); o.stop(now + i * 0.35 + 0.22);
    }
  } catch (_) { /* no audio on this screen */ }
}

// ---- alerts ------------------------------------------------------------
function isActive(a) { return a.condition ? a.condition === "active" : !a.resolved_at; }
function upsert(a) { state.alerts.set(a.id, a); }

function renderFeed() {
  const list = [...state.alerts.values()].sort((a, b) =>
    (isActive(b) - isActive(a)) || ((b.kind === "evacuation") - (a.kind === "evacuation")) || (b.started_at > a.started_at ? 1 : -1));
  const counts = { evacuation: 0, overlimit: 0, mine_offline: 0, point_offline: 0 };
  let unacked = 0;
  const canAct = state.me && state.me.role !== "auditor";
  $("rows").innerHTML = list.slice(0, 300).map((a) => {
    const active = isActive(a);
    if (active && counts[a.kind] !== undefined) counts[a.kind]++;
    if (a.handling === "unacknowledged") unacked++;
    const mine = esc(a.mine_name || a.mine);
    const actions = [];
    if (canAct && a.handling === "unacknowledged") actions.push(`<button data-act="ack" data-id="${esc(a.id)}">${t("ack")}</button>`);
    if (canAct && (a.handling === "unacknowledged" || a.handling === "acknowledged")) actions.push(`<button data-act="dispose" data-id="${esc(a.id)}">${t("dispose")}</button>`);
    const level = a.level && a.level !== "county" ? ` <span class="tag ${esc(a.level)}">${t("l." + a.level)}</span>` : "";
    const planned = a.planned ? ` <span class="tag">${t("planned")}</span>` : "";
    const reason = a.reason ? ` <span class="tag reason" data-reason="${esc(a.reason)}" title="${esc(a.rule || a.reason)}">${esc(reasonName(a.reason))}</span>` : "";
    return `<tr class="${esc(a.kind)} ${active ? "active" : "cleared"}" data-alert="${esc(a.id)}">
      <td class="kind ${esc(a.kind)}">${esc(t("k." + a.kind))}${reason}${planned}</td>
      <td><a href="#" data-mine="${esc(a.mine)}">${mine}</a></td>
      <td>${esc(a.point || "-")}</td>
      <td>${fmt(a.value)} / ${fmt(a.peak)} ${esc(a.unit || "")}</td>
      <td>${fmt(a.threshold)}</td>
      <td>${time(a.started_at)}</td>
      <td>${t(active ? "s.active" : "s.cleared")} · ${t("h." + (a.handling || "unacknowledged"))}${level}</td>
      <td>${actions.join(" ")}</td></tr>`;
  }).join("");
  $("empty").style.display = list.length ? "none" : "block";
  for (const k of Object.keys(counts)) $("n-" + k).textContent = counts[k];
  $("n-unacked").textContent = unacked;
  const evac = list.filter((a) => a.kind === "evacuation" && isActive(a));
  $("banner").className = evac.length ? "on" : "";
  $("banner").textContent = evac.length ? `${t("evacBanner")}: ${evac.map((a) => `${a.mine_name} ${a.point || ""} ${fmt(a.value)}${a.unit || ""}`).join(" · ")}` : "";
}

async function act(kind, id) {
  try {
    if (kind === "ack") {
      upsert(await api(`/api/alerts/${id}/ack`, { method: "POST", body: { by: state.me ? state.me.name : "" } }));
    } else if (kind === "dispose") {
      const note = prompt(t("disposeNote"));
      if (!note) return;
      upsert(await api(`/api/alerts/${id}/dispose`, { method: "POST", body: { by: state.me ? state.me.name : "", note } }));
    }
    renderAll();
  } catch (e) { alert(e.message); }
}

// ---- board -------------------------------------------------------------
const STATE_ORDER = ["normal", "offline", "falsification", "stopped_active", "overlimit", "evacuation"];
function mineState(code) {
  let s = "normal";
  for (const a of state.alerts.values()) {
    if (a.mine !== code || !isActive(a)) continue;
    const k = { evacuation: "evacuation", overlimit: "overlimit", mine_offline: "offline", point_offline: "offline",
                falsification_suspect: "falsification", suspected_illegal_production: "stopped_active" }[a.kind];
    if (k && STATE_ORDER.indexOf(k) > STATE_ORDER.indexOf(s)) s = k;
  }
  return s;
}

function renderBoard() {
  $("legend").innerHTML = [["normal", "#1f3a2a"], ["overlimit", "#5a4310"], ["evacuation", "#6e1c1f"], ["offline", "#1d3350"],
    ["stopped_active", "#4b2a59"], ["falsification", "#3f2d5c"]].map(([k, c]) => `<span><i style="background:${c}"></i>${t("st." + k)}</span>`).join("");
  const cities = new Map();
  for (const m of state.mines.values()) {
    if (!cities.has(m.city)) cities.set(m.city, new Map());
    const counties = cities.get(m.city);
    if (!counties.has(m.county)) counties.set(m.county, []);
    counties.get(m.county).push(m);
  }
  const name = (code) => (state.names && state.names[code]) || code;
  $("cities").innerHTML = [...cities.keys()].sort().map((city) => {
    const counties = cities.get(city);
    return `<div class="city"><div class="name">${esc(name(city))}</div>${[...counties.keys()].sort().map((county) =>
      `<div class="county"><span class="name">${esc(name(county))}</span>${counties.get(county).sort((a, b) => (a.code > b.code ? 1 : -1)).map((m) =>
        `<div class="mine state-${mineState(m.code)} status-${esc(m.status)} ${state.mine === m.code ? "selected" : ""}" data-mine="${esc(m.code)}" title="${esc(m.code)} ${esc(m.status)}">${esc(m.name)}</div>`).join("")}</div>`).join("")}</div>`;
  }).join("");
}

// ---- mine detail and trend --------------------------------------------
async function openMine(code) {
  state.mine = code; state.point = null;
  const m = state.mines.get(code);
  $("detail-title").textContent = m ? `${m.name} (${m.code})` : code;
  try {
    const [pts, trend] = await Promise.all([api(`/api/points?mine=${encodeURIComponent(code)}`),
      api(`/api/trend?mine=${encodeURIComponent(code)}&hours=${$("hours").value}`).catch(() => ({ points: {} }))]);
    state.points = pts.points || [];
    state.trend = trend.points || {};
    const gas = state.points.find((p) => p.effective);
    state.point = gas ? gas.code : (state.points[0] && state.points[0].code);
  } catch (e) { state.points = []; state.trend = {}; }
  renderBoard(); renderDetail();
}

function renderDetail() {
  if (!state.mine) return;
  const rows = state.points.map((p) => {
    const series = state.trend[p.code];
    const last = series && series.last;
    const lim = p.effective || {};
    const v = last ? last.value : null;
    const cls = v != null && lim.alarm != null ? (v >= lim.alarm ? "over" : v >= 0.9 * lim.alarm ? "near" : "") : "";
    return `<tr class="point ${state.point === p.code ? "selected" : ""}" data-point="${esc(p.code)}">
      <td>${esc(p.code)}</td><td class="wrap">${esc(p.place || "")}</td>
      <td class="${cls}">${fmt(v)} ${esc(p.unit || "")}</td><td>${fmt(lim.alarm)}</td><td>${fmt(lim.power_off)}</td>
      <td>${last ? time(last.ts) : "-"}</td></tr>`;
  }).join("");
  $("points").innerHTML = rows || `<tr><td colspan="6" class="empty">${t("nopoints")}</td></tr>`;
  drawChart();
}

function drawChart() {
  const c = $("chart"), g = c.getContext("2d");
  const W = c.width = c.clientWidth * devicePixelRatio, H = c.height = c.clientHeight * devicePixelRatio;
  g.clearRect(0, 0, W, H);
  const p = state.points.find((x) => x.code === state.point);
  const s = p && state.trend[p.code];
  $("chart-title").textContent = p ? `${p.code} ${p.place || ""}` : "";
  g.fillStyle = "#8a96a3"; g.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
  if (!s || !s.t || !s.t.length) { g.fillText(t("noTrend"), 20, 30); return; }
  const lim = p.effective || {};
  // The window is the hours chosen, or less when the daemon has not seen
  // that much yet (at least 10 minutes), so a young curve is not a sliver.
  const now = Date.now(), hours = Number($("hours").value);
  const t0 = Math.max(now - hours * 3600e3, Math.min(s.t[0] - 60e3, now - 600e3));
  let hi = Math.max(...s.max.filter((v) => v != null), lim.power_off || 0, lim.alarm || 0) * 1.15 || 1;
  let lo = Math.min(0, ...s.min.filter((v) => v != null));
  const L = 48 * devicePixelRatio, R = 10 * devicePixelRatio, T = 10 * devicePixelRatio, B = 22 * devicePixelRatio;
  const x = (ms) => L + (W - L - R) * (ms - t0) / (now - t0);
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  g.strokeStyle = "#26303a"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) { const v = lo + (hi - lo) * i / 4; g.beginPath(); g.moveTo(L, y(v)); g.lineTo(W - R, y(v)); g.stroke(); g.fillText(fmt(v), 4, y(v) + 4); }
  for (let i = 0; i <= 6; i++) { const ms = t0 + (now - t0) * i / 6; g.fillText(new Date(ms).toTimeString().slice(0, 5), Math.min(x(ms) - 14, W - R - 34 * devicePixelRatio), H - 5); }
  const line = (v, color, label) => { if (v == null) return; g.strokeStyle = color; g.setLineDash([6, 4]); g.beginPath(); g.moveTo(L, y(v)); g.lineTo(W - R, y(v)); g.stroke(); g.setLineDash([]); g.fillStyle = color; g.fillText(label, W - R - 60 * devicePixelRatio, y(v) - 4); };
  line(lim.alarm, "#f5a524", `${t("col.alarm")} ${fmt(lim.alarm)}`);
  line(lim.power_off, "#e5484d", `${t("col.poweroff")} ${fmt(lim.power_off)}`);
  g.fillStyle = "rgba(62,155,255,.22)";
  for (let i = 0; i < s.t.length; i++) { if (s.min[i] == null) continue; const xx = x(s.t[i]); g.fillRect(xx - 1, y(s.max[i]), 2, Math.max(1, y(s.min[i]) - y(s.max[i]))); }
  g.strokeStyle = "#3e9bff"; g.lineWidth = 1.5 * devicePixelRatio; g.beginPath();
  let pen = false;
  for (let i = 0; i < s.t.length; i++) { if (s.avg[i] == null) { pen = false; continue; } const xx = x(s.t[i]), yy = y(s.avg[i]); if (pen) g.lineTo(xx, yy); else g.moveTo(xx, yy); pen = true; }
  g.stroke();
}

// ---- tasks ---------------------------------------------------------------
async function loadTasks() {
  if (!state.me) return;
  const q = state.me.role === "inspector" ? `&assignee=${encodeURIComponent(state.me.name)}` : "";
  try { state.tasks = (await api(`/api/tasks?state=pending&limit=50${q}`)).tasks || []; } catch (_) { state.tasks = []; }
  renderTasks();
}

function renderTasks() {
  const canAct = state.me && state.me.role !== "auditor";
  $("task-list").innerHTML = state.tasks.map((k) => `
    <div class="task ${k.overdue ? "overdue" : ""}" data-task="${esc(k.id)}">
      <div><b>${esc(k.title)}</b> <span class="tag">${esc(k.state)}</span> ${k.overdue ? `<span class="tag city">${t("overdue")}</span>` : ""}</div>
      <div class="dim">${t("assignee")}: ${esc(k.assignee || "-")} · ${t("due")} ${time(k.due_at)}</div>
      ${canAct ? `<div class="actions">${k.state === "open" ? `<button data-take="${esc(k.id)}">${t("take")}</button>` : ""}</div>
      <form data-close="${esc(k.id)}">
        <label>${t("contacted")}</label><input name="contacted" required>
        <label>${t("cause")}</label><input name="cause" required>
        <label>${t("measures")}</label><textarea name="measures" rows="2" required></textarea>
        <label>${t("result")}</label><input name="result" required>
        <span></span><button class="primary" type="submit">${t("submit")}</button>
        <span></span><span class="msg"></span>
      </form>` : ""}
    </div>`).join("") || `<p class="empty">${t("notasks")}</p>`;
}

// ---- wiring --------------------------------------------------------------
function renderAll() { renderFeed(); renderBoard(); renderDetail(); renderTasks(); }

document.addEventListener("click", (e) => {
  const el = e.target.closest("[data-act],[data-mine],[data-point],[data-take]");
  if (!el) return;
  e.preventDefault();
  if (el.dataset.act) act(el.dataset.act, el.dataset.id);
  else if (el.dataset.mine) openMine(el.dataset.mine);
  else if (el.dataset.point) { state.point = el.dataset.point; renderDetail(); }
  else if (el.dataset.take) api(`/api/tasks/${el.dataset.take}/ack`, { method: "POST", body: { by: state.me.name } }).then(loadTasks).catch((x) => alert(x.message));
});
document.addEventListener("submit", async (e) => {
  const f = e.target.closest("form[data-close]");
  if (!f) return;
  e.preventDefault();
  const body = Object.fromEntries(new FormData(f).entries());
  body.by = state.me.name;
  try { await api(`/api/tasks/${f.dataset.close}/close`, { method: "POST", body }); await loadTasks(); }
  catch (x) { f.querySelector(".msg").textContent = x.message; }
});
$("mute").onclick = () => { muted = !muted; localStorage.setItem("mw-muted", muted ? "1" : "0"); $("mute").textContent = muted ? t("soundOff") : t("soundOn"); };
$("lang").onclick = () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("mw-lang", lang); applyLang(); };
$("hours").onchange = () => state.mine && openMine(state.mine);
window.addEventListener("resize", drawChart);

function connect() {
  const es = new EventSource("/api/alerts/stream");
  es.onopen = () => { $("conn").textContent = t("live"); $("conn").className = "ok"; };
  es.onerror = () => { $("conn").textContent = t("lost"); $("conn").className = "bad"; };
  es.addEventListener("alert", (m) => {
    let ev; try { ev = JSON.parse(m.data); } catch (_) { return; }
    const fresh = !state.alerts.has(ev.alert.id);
    upsert(ev.alert);
    if (ev.event === "raised" && fresh && ev.alert.kind === "evacuation") beep();
    if (ev.event.startsWith("task") || ev.event === "raised") loadTasks();
    renderFeed(); renderBoard();
  });
  es.addEventListener("lagged", async () => { await loadAlerts(); renderAll(); });
}

async function loadAlerts() {
  const data = await api("/api/alerts?limit=300");
  for (const a of data.alerts || []) upsert(a);
}

async function start() {
  try {
    state.me = await api("/api/me");
  } catch (e) {
    // Without sign-in (an older daemon), act as the patrol desk.
    state.me = { name: "patrol-desk", role: "province_desk", csrf_token: null };
  }
  const j = state.me.jurisdiction;
  $("who").textContent = `${state.me.name} · ${state.me.role}${j ? " · " + j.code : ""}`;
  if (state.me.csrf_token) { $("logout").style.display = ""; $("logout-csrf").value = state.me.csrf_token; }
  try {
    const m = await api("/api/mines");
    state.names = m.jurisdictions || {};
    for (const mine of m.mines || []) state.mines.set(mine.code, mine);
  } catch (_) { /* shown empty */ }
  try { await loadAlerts(); } catch (_) { /* the stream fills it */ }
  applyLang();
  connect();
  loadTasks();
  setInterval(() => { if (state.mine) openMine(state.mine); }, 30000);
}
start();
