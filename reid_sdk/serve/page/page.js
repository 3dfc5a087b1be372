// reid-serve's page: log in with an API key, browse cameras and tracks, click one to see its matches.
// Plain DOM and fetch; the key stays in this tab's sessionStorage and goes out as a Bearer header.
"use strict";

const $ = (id) => document.getElementById(id);
let selected = null;

function key() { return sessionStorage.getItem("reid-key"); }

async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: {...(options.headers || {}), Authorization: `Bearer ${key()}`}});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || response.statusText);
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return seconds > 946684800 ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"
                             : `${seconds.toFixed(1)} s`;
}

async function thumbnail(url) {
  const img = document.createElement("img");
  img.alt = "";
  api(url).then((r) => r.blob()).then((blob) => { img.src = URL.createObjectURL(blob); }).catch(() => {});
  return img;
}

function filters() {
  const query = new URLSearchParams({k: $("k").value, exclude_own_camera: $("exclude-own").checked});
  for (const [name, input] of [["since", $("since")], ["until", $("until")]]) {
    if (input.value) query.set(name, Date.parse(input.value + "Z") / 1000);
  }
  const boxes = [...document.querySelectorAll("#camera-filter input")];
  if (boxes.some((box) => !box.checked)) boxes.filter((box) => box.checked).forEach((box) => query.append("cameras", box.value));
  return query;
}

async function show(title, response) {
  $("query-title").textContent = title;
  $("status").textContent = "";
  const list = $("matches");
  list.replaceChildren();
  const {matches} = await response.json();
  for (const match of matches) {
    const item = document.createElement("li");
    item.className = "match";
    item.dataset.entry = match.entry_id;
    item.append(await thumbnail(match.thumbnail));
    const label = document.createElement("div");
    label.textContent = `camera ${match.camera} · track ${match.track_id ?? "–"} · ${when(match.first_time ?? match.timestamp)} · score ${match.score.toFixed(3)}`;
    item.append(label);
    list.append(item);
  }
  if (!matches.length) $("status").textContent = "No match under these filters.";
}

async function search(track) {
  document.querySelectorAll(".track.selected").forEach((el) => el.classList.remove("selected"));
  track.element.classList.add("selected");
  selected = track;
  const path = track.name ? `/api/search/track/${encodeURIComponent(track.name)}` : `/api/search/entry/${track.entry_ids[0]}`;
  try {
    await show(`Matches of ${track.name ?? "entry " + track.entry_ids[0]}`, await api(`${path}?${filters()}`));
    $("erase").hidden = $("who").dataset.role !== "admin";
  } catch (error) { $("status").textContent = error.message; }
}

async function loadCameras() {
  const cameras = await (await api("/api/cameras")).json();
  const section = $("cameras");
  section.replaceChildren();
  $("camera-filter").querySelectorAll("label").forEach((el) => el.remove());
  for (const {camera} of cameras) {
    const box = document.createElement("label");
    box.innerHTML = `<input type="checkbox" checked> ${camera}`;
    box.firstChild.value = camera;
    $("camera-filter").append(box);
    const block = document.createElement("div");
    block.className = "camera";
    const heading = document.createElement("h3");
    heading.textContent = `Camera ${camera}`;
    const strip = document.createElement("div");
    strip.className = "tracks";
    block.append(heading, strip);
    section.append(block);
    const {tracks} = await (await api(`/api/cameras/${encodeURIComponent(camera)}/tracks`)).json();
    for (const track of tracks) {
      const button = document.createElement("button");
      button.className = "track";
      button.dataset.track = track.name ?? `entry:${track.entry_ids[0]}`;
      button.append(await thumbnail(track.thumbnail));
      const caption = document.createElement("div");
      caption.textContent = `${track.track_id ?? "entry " + track.entry_ids[0]} ${when(track.first_time)}`;
      button.append(caption);
      track.element = button;
      button.addEventListener("click", () => search(track));
      strip.append(button);
    }
  }
}

async function logIn() {
  try {
    const me = await (await api("/api/whoami")).json();
    $("who").textContent = `${me.name} (${me.role})`;
    $("who").dataset.role = me.role;
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    await loadCameras();
  } catch (error) {
    sessionStorage.removeItem("reid-key");
    $("login-error").textContent = error.message.startsWith("401") ? "That key is not valid." : error.message;
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("reid-key", $("key").value);
  logIn();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem("reid-key"); location.reload(); });
$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("crop").files[0];
  if (!file) return;
  const body = new FormData();
  body.append("image", file);
  try { await show(`Matches of ${file.name}`, await api(`/api/search/crop?${filters()}`, {method: "POST", body})); }
  catch (error) { $("status").textContent = error.message; }
});
$("erase").addEventListener("click", async () => {
  if (!selected || !confirm(`Erase every entry of ${selected.name}? This cannot be undone.`)) return;
  const body = selected.name ? {track: selected.name} : {entry_ids: selected.entry_ids};
  try {
    const {removed} = await (await api("/api/erase", {method: "POST", body: JSON.stringify(body),
                                                       headers: {"Content-Type": "application/json"}})).json();
    $("status").textContent = `Erased ${removed} entries.`;
    $("matches").replaceChildren();
    $("erase").hidden = true;
    await loadCameras();
  } catch (error) { $("status").textContent = error.message; }
});
if (key()) logIn();
