// The station staff page: status tables, the offline map and the live feed (server-sent events).
//
// Data comes from the gateway (gateway/station/web.py): /api/boundary once, then /api/events, whose
// first message is the whole status (and the recent tracks) and every later one a single change
// ({type: "fix" | "capture" | "alert" | "unit"}). No framework, no build step: this file is served as is.
// Leaflet draws the map with no tile layer (no internet in the field): a plain background, the
// reserve boundary, villages and camps with their conflict buffers, tracks, collars and cameras.

/* global L */

const TRACK_HOURS = 24;
const MAX_TRACK_POINTS = 2000;
const MAX_CAPTURES = 24;
const AGO_REFRESH_MS = 5000;
const CLEARED_FADE_MS = 5000;
const PALETTE = ["#d62728", "#1f77b4", "#9467bd", "#e377c2", "#ff7f0e", "#17becf", "#8c564b", "#2ca02c", "#bcbd22", "#7f7f7f"];

const state = {
  station: null,
  units: new Map(), // unit id -> unit view
  collars: new Map(), // track -> collar view
  alerts: new Map(), // key -> alert view
  captures: new Map(), // event id -> capture view
  tracks: new Map(), // track -> [[t, lat, lon], ...]
  loadedOnce: false,
};

// -- small helpers --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

const pad = (n) => String(n).padStart(2, "0");

function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : new Date(t);
}

function sameDay(a, b, utc) {
  return utc
    ? a.getUTCFullYear() === b.getUTCFullYear() && a.getUTCMonth() === b.getUTCMonth() && a.getUTCDate() === b.getUTCDate()
    : a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** "14:03:07 UTC", with the date in front when it is not today. */
function utcText(iso, seconds = true) {
  const d = parseTime(iso);
  if (!d) return "—";
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${seconds ? ":" + pad(d.getUTCSeconds()) : ""}`;
  const day = sameDay(d, new Date(), true) ? "" : `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `;
  return `${day}${time} UTC`;
}

/** "22:03 local", with the date when it is not today. */
function localText(iso) {
  const d = parseTime(iso);
  if (!d) return "";
  const day = sameDay(d, new Date(), false) ? "" : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `;
  return `${day}${pad(d.getHours())}:${pad(d.getMinutes())} local`;
}

/** "just now", "40 s ago", "12 min ago", "3 h 20 min ago", "2 d 4 h ago". */
function agoText(iso) {
  const d = parseTime(iso);
  if (!d) return "never";
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < -60) return `in ${Math.round(-s / 60)} min (clock ahead?)`;
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min ago`;
  return `${Math.floor(h / 24)} d ${h % 24} h ago`;
}

/** A span whose "x min ago" text the page refreshes every few seconds. */
function agoSpan(iso) {
  return el("span", { class: "ago", "data-ago": iso || "", text: agoText(iso) });
}

function refreshAgo() {
  for (const node of document.querySelectorAll("[data-ago]")) node.textContent = agoText(node.dataset.ago);
}

function colourOf(track) {
  let h = 0;
  for (const c of track) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function num(value, digits = 0, unit = "") {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(digits)}${unit}`;
}

function flashRow(row) {
  row.classList.remove("updated");
  void row.offsetWidth; // restart the animation
  row.classList.add("updated");
}

// -- clocks and the connection indicator ----------------------------------------------------------

function tickClocks() {
  const now = new Date();
  document.getElementById("clock-utc").textContent =
    `${pad(now.getUTCHours())}:${pad(now.getUTCMinutes())}:${pad(now.getUTCSeconds())} UTC`;
  document.getElementById("clock-local").textContent =
    `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())} local`;
}

function setConnection(which) {
  const box = document.getElementById("conn");
  box.dataset.state = which;
  box.querySelector(".text").textContent = { live: "live", reconnecting: "reconnecting…", connecting: "connecting…" }[which];
}

// -- the map ----------------------------------------------------------------------------------------

const map = L.map("map", { zoomSnap: 0.25, preferCanvas: false });
map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a> · offline map, no tiles');
map.setView([38.85, 106.0], 10);
const trackLines = new Map(); // track -> L.Polyline
const collarMarkers = new Map(); // track -> L.Marker
const cameraMarkers = new Map(); // unit -> L.Marker
let fitted = false;

const ZONE_STYLE = {
  reserve: { color: "#2f6b3a", weight: 3, fillColor: "#cfe3c9", fillOpacity: 0.35, className: "zone-reserve" },
  buffer: { color: "#c0392b", weight: 1, dashArray: "5 5", fillOpacity: 1, className: "zone-buffer" },
  village: { color: "#8e0e12", weight: 2, fillColor: "#e0393e", fillOpacity: 0.75, className: "zone-village" },
  camp: { color: "#8e0e12", weight: 2, fillColor: "#f08a24", fillOpacity: 0.8, className: "zone-camp" },
};

async function loadBoundary() {
  const note = document.getElementById("map-note");
  let geojson = null;
  try {
    const response = await fetch("/api/boundary");
    geojson = await response.json();
    if (!response.ok) throw new Error(geojson.error || response.statusText);
  } catch (error) {
    note.textContent = `The reserve boundary could not be loaded: ${error.message}`;
    return;
  }
  if (!geojson) {
    note.textContent = "No reserve boundary configured ([station] boundary in the gateway config): tracks only.";
    return;
  }
  const layer = L.geoJSON(geojson, {
    style: (f) => ZONE_STYLE[f.properties.kind] || { color: "#555", weight: 1 },
    onEachFeature: (f, lyr) => {
      const p = f.properties;
      if (p.kind === "village" || p.kind === "camp") {
        lyr.bindTooltip(p.name, { permanent: true, direction: "right", className: "zone-label" });
      } else if (p.kind === "buffer") {
        lyr.bindTooltip(`${p.name}: a collar here raises a conflict alert`, { sticky: true });
      } else {
        lyr.bindTooltip(p.name || p.kind, { sticky: true });
      }
    },
  }).addTo(map);
  layer.eachLayer((lyr) => lyr.getElement?.()?.setAttribute("data-zone", lyr.feature.properties.name || ""));
  layer.bringToBack();
  const reserves = layer.getLayers().filter((l) => l.feature.properties.kind === "reserve");
  const bounds = (reserves.length ? L.featureGroup(reserves) : layer).getBounds();
  if (bounds.isValid()) {
    map.fitBounds(bounds, { padding: [20, 20], animate: false });
    fitted = true;
  }
  const buffer = geojson.features.find((f) => f.properties.kind === "buffer");
  note.textContent =
    "Offline map: no background tiles. Green: the reserve. Red: villages, orange: herders' camps; hatched: their " +
    (buffer ? `${buffer.properties.buffer_m} m ` : "") + "conflict buffer.";
}

function collarPopup(track) {
  const c = state.collars.get(track);
  const fix = c?.last_fix || {};
  return (
    `<strong>${esc(track)}</strong><br>` +
    `${esc(utcText(fix.time))} · ${esc(localText(fix.time))}<br>` +
    `${num(fix.lat, 5)}, ${num(fix.lon, 5)}${fix.alt != null ? ` · ${num(fix.alt, 0, " m")}` : ""}<br>` +
    `battery ${esc(num(c?.battery_percent, 0, " %"))} · RSSI ${esc(num(c?.rssi, 0, " dBm"))}` +
    ` · SNR ${esc(num(c?.snr, 1, " dB"))}<br>via ${esc(c?.via || "—")}`
  );
}

function drawTrack(track) {
  const points = state.tracks.get(track) || [];
  const latlngs = points.map((p) => [p[1], p[2]]);
  let line = trackLines.get(track);
  if (!line) {
    line = L.polyline(latlngs, { color: colourOf(track), weight: 3, opacity: 0.75, className: "track" }).addTo(map);
    line.getElement()?.setAttribute("data-track", track);
    trackLines.set(track, line);
  } else {
    line.setLatLngs(latlngs);
  }
  placeCollarMarker(track);
}

function placeCollarMarker(track) {
  const c = state.collars.get(track);
  const points = state.tracks.get(track) || [];
  const fix = c?.last_fix;
  const last = fix ? [fix.lat, fix.lon] : points.length ? [points.at(-1)[1], points.at(-1)[2]] : null;
  if (!last) return;
  let marker = collarMarkers.get(track);
  if (!marker) {
    const icon = L.divIcon({
      className: "collar-marker",
      iconSize: [14, 14],
      iconAnchor: [7, 7],
      html: `<span class="pin" style="background:${colourOf(track)}"></span><span class="label">${esc(track)}</span>`,
    });
    marker = L.marker(last, { icon, title: track, riseOnHover: true }).addTo(map);
    marker.bindPopup(() => collarPopup(track));
    collarMarkers.set(track, marker);
  } else {
    marker.setLatLng(last);
  }
  const node = marker.getElement();
  if (node) {
    node.dataset.collarMarker = track;
    node.dataset.lat = String(last[0]);
    node.dataset.lon = String(last[1]);
    node.dataset.time = fix?.time || "";
  }
  if (marker.isPopupOpen()) marker.setPopupContent(collarPopup(track));
}

const CAMERA_SVG =
  '<svg viewBox="0 0 24 20" aria-hidden="true"><rect x="1" y="5" width="22" height="14" rx="2" fill="#2b3a55" stroke="#fff"/>' +
  '<rect x="7" y="1.5" width="8" height="4.5" rx="1" fill="#2b3a55" stroke="#fff"/>' +
  '<circle cx="12" cy="12" r="4.5" fill="#cfe0ff" stroke="#fff" stroke-width="1.5"/></svg>';

function placeCamera(unit) {
  const u = state.units.get(unit);
  const pos = u?.position;
  let marker = cameraMarkers.get(unit);
  if (!pos || pos.lat == null || pos.lon == null) {
    if (marker) {
      marker.remove();
      cameraMarkers.delete(unit);
    }
    return;
  }
  const popup = () =>
    `<strong>📷 ${esc(unit)}</strong> — ${esc(u.state)}<br>last seen ${esc(agoText(u.last_seen))}` +
    `<br>battery ${esc(num(u.battery_v, 2, " V"))} · disk ${esc(num(u.disk_used_percent, 0, " % used"))}`;
  if (!marker) {
    const icon = L.divIcon({ className: "camera-marker", iconSize: [22, 18], iconAnchor: [11, 9], html: `${CAMERA_SVG}<span class="label">${esc(unit)}</span>` });
    marker = L.marker([pos.lat, pos.lon], { icon, title: unit }).addTo(map);
    marker.bindPopup(popup);
    cameraMarkers.set(unit, marker);
  } else {
    marker.setLatLng([pos.lat, pos.lon]);
  }
  const node = marker.getElement();
  if (node) {
    node.dataset.cameraMarker = unit;
    node.dataset.state = u.state || "";
  }
}

// -- alerts -------------------------------------------------------------------------------------------

const SEVERITY_RANK = { critical: 0, warning: 1 };

function alertItem(alert) {
  const severity = alert.severity === "critical" ? "⚠ CRITICAL" : "▲ WARNING";
  return el(
    "li",
    { class: "alert", "data-alert-key": alert.key, "data-severity": alert.severity, "data-kind": alert.kind },
    el("span", { class: "severity", text: `${severity} · ${alert.kind.replaceAll("_", " ")}` }),
    el("span", { class: "message", text: alert.message }),
    el("span", { class: "since" }, `since ${utcText(alert.since, false)} · ${localText(alert.since)} · `, agoSpan(alert.since)),
  );
}

function sortAlerts() {
  const list = document.getElementById("alerts");
  const items = [...list.children].sort((a, b) => {
    const x = state.alerts.get(a.dataset.alertKey) || {};
    const y = state.alerts.get(b.dataset.alertKey) || {};
    return (SEVERITY_RANK[x.severity] ?? 9) - (SEVERITY_RANK[y.severity] ?? 9) || String(x.since).localeCompare(String(y.since));
  });
  list.append(...items);
}

function showAlert(alert, flash) {
  const list = document.getElementById("alerts");
  const old = list.querySelector(`[data-alert-key="${CSS.escape(alert.key)}"]`);
  state.alerts.set(alert.key, alert);
  const item = alertItem(alert);
  if (old && !old.classList.contains("cleared")) {
    old.replaceWith(item);
  } else {
    old?.remove();
    list.append(item);
    if (flash) item.classList.add("new");
  }
  sortAlerts();
}

function clearAlert(key) {
  const item = document.querySelector(`#alerts [data-alert-key="${CSS.escape(key)}"]`);
  state.alerts.delete(key);
  if (!item || item.classList.contains("cleared")) return;
  item.classList.remove("new");
  item.classList.add("cleared");
  item.querySelector(".severity").textContent = "✓ CLEARED · " + item.querySelector(".severity").textContent.split("·").pop().trim();
  setTimeout(() => {
    if (item.classList.contains("cleared")) item.remove();
  }, CLEARED_FADE_MS);
}

// -- units --------------------------------------------------------------------------------------------

async function command(name, unit, fields, button) {
  const out = document.getElementById("command-result");
  out.classList.remove("error");
  out.textContent = `${name} → ${unit}…`;
  if (button) button.disabled = true;
  try {
    const response = await fetch(`/api/command/${name}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ unit, ...fields }),
    });
    const answer = await response.json();
    const words = answer.message || answer.error || answer.status;
    out.textContent = `${unit}: ${name} — ${answer.status || response.status}: ${words} (${utcText(new Date().toISOString())})`;
    if (!response.ok) out.classList.add("error");
  } catch (error) {
    out.textContent = `${unit}: ${name} failed: ${error.message}`;
    out.classList.add("error");
  } finally {
    if (button) button.disabled = false;
  }
}

function unitRow(u) {
  const camera = u.role === "camera";
  const stateText = { ok: "✓ ok", degraded: "▲ degraded", offline: "✕ offline" }[u.state] || u.state;
  const battery = u.battery_v != null ? num(u.battery_v, 2, " V") : num(u.battery_percent, 0, " %");
  const unsynced = u.clock === "unsynced";
  const button = (label, name, fields, title) =>
    el("button", { type: "button", title, text: label, onclick: (e) => command(name, u.unit, fields, e.currentTarget) });
  return el(
    "tr",
    { "data-unit": u.unit, "data-state": u.state, "data-role": u.role || "" },
    el("td", { class: "name" }, u.unit, el("small", { text: u.role || "" })),
    el("td", {}, el("span", { class: `badge ${u.state}`, text: stateText }), u.reasons?.length ? el("small", { text: u.reasons.join("; ") }) : null),
    el("td", {}, battery),
    el(
      "td",
      { class: u.disk_used_percent >= 90 ? "low" : "" },
      u.disk_used_percent != null ? `${num(u.disk_used_percent, 0)} % used` : "—",
      u.disk_free_mb != null ? el("small", { text: `${num(u.disk_free_mb / 1000, 1)} GB free` }) : null,
    ),
    el("td", { class: u.state === "offline" ? "stale" : "" }, agoSpan(u.last_seen), el("small", { text: utcText(u.last_seen) })),
    el(
      "td",
      { class: unsynced ? "low" : "" },
      u.version || "—",
      el("small", { text: `clock ${unsynced ? "⚠ unsynced" : u.clock || "?"}` }),
      u.config_hash ? el("small", { text: `config ${String(u.config_hash).slice(0, 8)}` }) : null,
    ),
    el(
      "td",
      {},
      el(
        "div",
        { class: "actions" },
        button("ping", "ping", {}, `ask ${u.unit} to answer`),
        camera ? button("take picture", "capture", {}, `${u.unit} takes a picture now`) : null,
        camera ? button("pause", "capture_mode", { mode: "paused" }, `${u.unit} ignores the PIR (servicing the site)`) : null,
        camera ? button("resume", "capture_mode", { mode: "normal" }, `${u.unit} captures on motion again`) : null,
      ),
    ),
  );
}

function showUnit(u, flash) {
  state.units.set(u.unit, u);
  const body = document.querySelector("#units tbody");
  const row = unitRow(u);
  const old = body.querySelector(`tr[data-unit="${CSS.escape(u.unit)}"]`);
  if (old) old.replaceWith(row);
  else {
    const after = [...body.children].find((r) => r.dataset.unit > u.unit);
    body.insertBefore(row, after || null);
  }
  if (flash) flashRow(row);
  placeCamera(u.unit);
}

// -- collars ------------------------------------------------------------------------------------------

function collarRow(c) {
  const fix = c.last_fix || {};
  const low = c.battery_percent != null && c.battery_percent < 20;
  return el(
    "tr",
    { "data-collar": c.collar, "data-fix-time": fix.time || "" },
    el("td", { class: "name" }, el("span", { style: `color:${colourOf(c.collar)}`, text: "● " }), c.collar),
    el("td", { class: "fix-time" }, agoSpan(fix.time), el("small", { text: `${utcText(fix.time)} · ${localText(fix.time)}` })),
    el("td", { class: "position" }, `${num(fix.lat, 5)}, ${num(fix.lon, 5)}`),
    el("td", { class: low ? "low" : "" }, low ? `▼ ${num(c.battery_percent, 0, " %")}` : num(c.battery_percent, 0, " %")),
    el("td", {}, num(c.rssi, 0, " dBm"), c.snr != null ? el("small", { text: `SNR ${num(c.snr, 1, " dB")}` }) : null),
    el("td", {}, c.via || "—"),
    el("td", { class: "count" }, c.fixes_24h ?? "—"),
  );
}

function showCollar(c, flash) {
  state.collars.set(c.collar, c);
  const body = document.querySelector("#collars tbody");
  const row = collarRow(c);
  const old = body.querySelector(`tr[data-collar="${CSS.escape(c.collar)}"]`);
  if (old) old.replaceWith(row);
  else {
    const after = [...body.children].find((r) => r.dataset.collar > c.collar);
    body.insertBefore(row, after || null);
  }
  if (flash) flashRow(row);
}

function onFix(track, fix) {
  const t = Date.parse(fix.time) / 1000;
  const points = state.tracks.get(track) || [];
  const added = !points.some((p) => Math.abs(p[0] - t) < 0.0005); // else: already in the status
  if (added) {
    points.push([t, fix.lat, fix.lon]);
    if (points.length > 1 && points.at(-2)[0] > t) points.sort((a, b) => a[0] - b[0]); // a late fix
    if (points.length > MAX_TRACK_POINTS) points.splice(0, points.length - MAX_TRACK_POINTS);
    state.tracks.set(track, points);
  }
  const old = state.collars.get(track);
  const newer = !old?.last_fix?.time || Date.parse(old.last_fix.time) <= Date.parse(fix.time);
  const counted = (old?.fixes_24h ?? 0) + (added ? 1 : 0);
  const collar = {
    collar: track,
    last_heard: new Date().toISOString(),
    via: fix.via ?? old?.via,
    last_fix: newer ? fix : old.last_fix,
    battery_percent: newer ? fix.battery ?? old?.battery_percent ?? null : old.battery_percent,
    rssi: newer ? fix.rssi ?? null : old.rssi,
    snr: newer ? fix.snr ?? null : old.snr,
    fixes_24h: counted,
  };
  showCollar(collar, true);
  drawTrack(track);
}

// -- captures -----------------------------------------------------------------------------------------

let thumbRetry = 0;

function captureCard(c) {
  const img = el("img", { class: "thumb", alt: `${c.camera || c.unit} ${utcText(c.start)}`, loading: "lazy" });
  const card = el(
    "figure",
    { class: "capture", "data-event-id": c.event_id, "data-unit": c.unit, "data-thumb": "loading", tabindex: "0" },
    img,
    el(
      "figcaption",
      {},
      el("span", { class: "when", text: utcText(c.start) }),
      el("small", { text: ` ${localText(c.start)}` }),
      el("br"),
      `${c.unit}${c.camera ? " / " + c.camera : ""} `,
      c.night == null ? null : el("span", { class: `light ${c.night ? "night" : "day"}`, text: c.night ? "☾ night" : "☀ day" }),
      el("br"),
      el("span", { class: "stills", text: `${c.stills ?? 0} still${c.stills === 1 ? "" : "s"}` }),
      ` · ${c.trigger || "?"}${c.end ? "" : " · in progress"}`,
    ),
  );
  img.addEventListener("load", () => (card.dataset.thumb = "ok"));
  img.addEventListener("error", () => (card.dataset.thumb = "missing"));
  img.src = c.thumbnail;
  card.addEventListener("click", () => openImage(c.event_id));
  card.addEventListener("keydown", (e) => e.key === "Enter" && openImage(c.event_id));
  return card;
}

function showCapture(c, flash) {
  state.captures.set(c.event_id, c);
  const box = document.getElementById("captures");
  const old = box.querySelector(`[data-event-id="${CSS.escape(c.event_id)}"]`);
  const card = captureCard(c);
  if (old) {
    // Keep a thumbnail already shown; otherwise ask again (it arrives after the burst).
    if (old.dataset.thumb === "ok") {
      card.querySelector("img").replaceWith(old.querySelector("img"));
      card.dataset.thumb = "ok";
    } else {
      card.querySelector("img").src = `${c.thumbnail}?r=${++thumbRetry}`;
    }
    old.replaceWith(card);
  } else {
    const after = [...box.children].find((x) => (state.captures.get(x.dataset.eventId)?.start || "") < c.start);
    box.insertBefore(card, after || null);
    if (flash) card.classList.add("new");
  }
  while (box.children.length > MAX_CAPTURES) {
    state.captures.delete(box.lastElementChild.dataset.eventId);
    box.lastElementChild.remove();
  }
}

async function openImage(eventId) {
  const c = state.captures.get(eventId);
  const dialog = document.getElementById("lightbox");
  const status = document.getElementById("lightbox-status");
  const img = document.getElementById("lightbox-image");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
  document.getElementById("lightbox-caption").textContent =
    `${c.unit}${c.camera ? " / " + c.camera : ""} · ${utcText(c.start)} · ${localText(c.start)} · ${c.stills ?? 0} stills`;
  dialog.dataset.eventId = eventId;
  if (!dialog.open) dialog.showModal();
  if (!c.image) {
    status.dataset.state = "error";
    status.textContent = "The full image is not known yet: the camera names its best still when the burst ends.";
    return;
  }
  status.dataset.state = "fetching";
  status.textContent = `fetching from ${c.unit}… (over the radio link this can take a minute)`;
  try {
    const response = await fetch(c.image);
    if (!response.ok) {
      let words = response.statusText;
      try {
        words = (await response.json()).error || words;
      } catch {
        /* not JSON: keep the status text */
      }
      throw new Error(words);
    }
    const blob = await response.blob();
    if (dialog.dataset.eventId !== eventId) return; // another image was opened meanwhile
    img.src = URL.createObjectURL(blob);
    img.alt = `full image of ${eventId}`;
    status.dataset.state = "ok";
    status.textContent = "";
  } catch (error) {
    if (dialog.dataset.eventId !== eventId) return;
    status.dataset.state = "error";
    status.textContent = `Could not get the full image: ${error.message}`;
  }
}

// -- the whole status and the live feed ---------------------------------------------------------------

// The station broker's bridge(s) to the central broker: text and colour, so a dead uplink is seen.
function showBridges(bridges) {
  const box = document.getElementById("bridges");
  box.replaceChildren();
  for (const [name, b] of Object.entries(bridges || {})) {
    const badge = document.createElement("span");
    badge.className = `bridge ${b.up ? "up" : "down"}`;
    badge.dataset.bridge = name;
    badge.textContent = b.up ? "central link up" : `central link DOWN since ${(b.since || "").slice(11, 16)} UTC`;
    badge.title = `${name}: ${b.up ? "up" : "down"} since ${b.since}`;
    box.append(badge);
  }
}

// Uplinks beyond the station, as the gateway last reported them: quiet when fine, red when failing.
function showUplinks(uplinks) {
  const box = document.getElementById("uplinks");
  box.replaceChildren();
  for (const [name, u] of Object.entries(uplinks || {})) {
    const badge = document.createElement("span");
    const failing = (u.consecutive_failures || 0) > 0;
    badge.className = `bridge ${failing ? "down" : "up"}`;
    badge.dataset.uplink = name;
    const what =
      name === "iridium"
        ? `${u.credits_used_today ?? "?"}/${u.credits_per_day ?? "?"} credits`
        : `${u.items_queued ?? 0} waiting`;
    badge.textContent = `${name}: ${failing ? "FAILING" : what}`;
    badge.title = failing ? `${u.last_error || "failing"}` : JSON.stringify(u);
    box.append(badge);
  }
}

function showStatus(message) {
  const status = message.status;
  state.station = status.station;
  showBridges(status.station.bridges);
  showUplinks(status.station.uplinks);
  document.getElementById("station-name").textContent = `${status.station.site} · ${status.station.unit}`;
  document.title = `uncia ${status.station.site} · ${status.station.unit}`;
  const flash = state.loadedOnce; // after a reconnect, what is new still flashes

  document.querySelector("#units tbody").replaceChildren();
  state.units.clear();
  for (const u of status.units) showUnit(u, false);
  for (const unit of [...cameraMarkers.keys()]) if (!state.units.has(unit)) placeCamera(unit);

  document.querySelector("#collars tbody").replaceChildren();
  state.collars.clear();
  for (const c of status.collars) showCollar(c, false);

  const active = new Set(status.alerts.map((a) => a.key));
  for (const key of [...state.alerts.keys()]) if (!active.has(key)) clearAlert(key);
  for (const a of status.alerts) showAlert(a, flash && !state.alerts.has(a.key));

  document.getElementById("captures").replaceChildren();
  state.captures.clear();
  for (const c of status.captures) showCapture(c, false);

  if (message.tracks) {
    state.tracks = new Map(Object.entries(message.tracks));
    for (const [track, line] of trackLines) if (!state.tracks.has(track)) (line.remove(), trackLines.delete(track));
  }
  for (const track of new Set([...state.tracks.keys(), ...state.collars.keys()])) drawTrack(track);
  if (!fitted) {
    const lines = [...trackLines.values()].filter((l) => l.getLatLngs().length);
    if (lines.length) {
      map.fitBounds(L.featureGroup(lines).getBounds(), { padding: [30, 30], maxZoom: 13, animate: false });
      fitted = true;
    }
  }
  state.loadedOnce = true;
}

function onEvent(message) {
  switch (message.type) {
    case "status":
      showStatus(message);
      break;
    case "fix":
      onFix(message.track, message.fix);
      break;
    case "capture":
      showCapture(message.capture, true);
      break;
    case "alert":
      if (message.raised) showAlert(message.alert, !state.alerts.has(message.alert.key));
      else clearAlert(message.alert.key);
      break;
    case "unit":
      showUnit(message.unit, true);
      break;
    case "bridge":
      state.station.bridges = { ...(state.station.bridges || {}), [message.bridge]: { up: message.up, since: message.since } };
      showBridges(state.station.bridges);
      break;
    default:
      break; // a newer gateway: ignore what this page does not know
  }
}

function connect() {
  setConnection(state.loadedOnce ? "reconnecting" : "connecting");
  const source = new EventSource(`/api/events?hours=${TRACK_HOURS}`);
  source.addEventListener("open", () => setConnection("live"));
  source.addEventListener("message", (e) => {
    try {
      onEvent(JSON.parse(e.data));
    } catch (error) {
      console.error("live event not understood", error, e.data);
    }
  });
  source.addEventListener("error", () => {
    setConnection("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (the gateway answered with an error): try again ourselves.
      setTimeout(connect, 5000);
    }
  });
}

tickClocks();
setInterval(tickClocks, 1000);
setInterval(refreshAgo, AGO_REFRESH_MS);
window.uncia = { map, state, trackLines, collarMarkers, cameraMarkers }; // for a look from the console
await loadBoundary();
connect();
