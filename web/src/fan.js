// The fan page (/): leaderboard, track map, race-control banner and the chosen car.
//
// Two subscriptions on two sockets of the same node: the *field* (timing and
// position of every car, for the leaderboard and the map) and the *detail*
// (inputs, engine, tyres and imu of the chosen and favourite cars only).  Picking
// favourites re-subscribes the detail socket in place.  Both resume from their
// cursor (kept in sessionStorage) after a drop or a reload.
//
// Query parameters: codec=full|sparse|vcdiff, suspend_s=N (reconnecting this long
// becomes suspended; default 30).  window.__slipstream exposes state for tests.

import { Leaderboard, boardRows, eventText, renderBanner } from "./board.js";
import { CarPanel, History } from "./car.js";
import { TrackMap } from "./map.js";
import { Catalogue, Stream, wsUrl } from "@slipstream/client";

const FIELD_GROUPS = ["timing", "position"];
const DETAIL_GROUPS = ["inputs", "engine", "tyres", "imu"];
const params = new URLSearchParams(location.search);
const codec = params.get("codec");
const suspendAfterMs = 1000 * Number(params.get("suspend_s") ?? 30);

function loadSet(key, storage) {
  try {
    return new Set(JSON.parse(storage.getItem(key) ?? "[]").filter(Number.isInteger));
  } catch {
    return new Set();
  }
}

const page = {
  entries: new Map(), // car -> {driver, team}
  raceStart: null,
  flagEvent: null,
  race: null,
  favourites: loadSet("slipstream.favourites", localStorage),
  selected: Number(sessionStorage.getItem("slipstream.selected")) || null,
  history: new History(),
  log: [],
};

const $ = (id) => document.getElementById(id);
const banner = { banner: $("banner"), flag: $("flag"), lap: $("lap"), toGo: $("to-go") };

async function loadRace() {
  try {
    const response = await fetch("/v1/race", { cache: "no-store" });
    if (!response.ok) return;
    const info = await response.json();
    if (info.race && info.race !== page.race) resetRace(info.race);
    if (info.start) setRaceStart(info.start);
    if (info.flag) page.flagEvent = info.flag;
    if (page.log.length === 0) {
      // Joined mid-race: the race-control log so far (the stream brings what follows).
      for (const msg of info.events ?? []) {
        const text = eventText(msg, page.entries);
        if (text) addLog(text);
      }
    }
  } catch {
    // The stream's race_start event fills it in later.
  }
}

function resetRace(race) {
  page.race = race;
  page.history.clear();
  page.log = [];
  $("rc-log").replaceChildren();
}

function setRaceStart(data) {
  page.raceStart = data;
  for (const entry of data.entries ?? []) {
    if (entry && Number.isInteger(entry.car)) page.entries.set(entry.car, entry);
  }
  const title = [data.title, data.track].filter(Boolean).join(" — ");
  $("race-title").textContent = title || page.race || "";
}

function addLog(text) {
  page.log.push(text);
  if (page.log.length > 30) page.log.shift();
  const li = document.createElement("li");
  li.textContent = text;
  const ol = $("rc-log");
  ol.prepend(li);
  while (ol.childElementCount > 30) ol.lastChild.remove();
  $("rc-message").textContent = text;
}

function detailCars() {
  const cars = new Set(page.favourites);
  if (page.selected !== null) cars.add(page.selected);
  return [...cars].sort((a, b) => a - b);
}

function saveChoice() {
  localStorage.setItem("slipstream.favourites", JSON.stringify([...page.favourites]));
  if (page.selected !== null) sessionStorage.setItem("slipstream.selected", String(page.selected));
}

function select(car) {
  page.selected = car;
  saveChoice();
  detail.setCars(detailCars());
  renderFavourites();
  schedule();
}

function toggleFavourite(car) {
  if (page.favourites.has(car)) page.favourites.delete(car);
  else page.favourites.add(car);
  saveChoice();
  detail.setCars(detailCars());
  renderFavourites();
  schedule();
}

function renderFavourites() {
  const div = $("favourites");
  div.replaceChildren(
    ...[...page.favourites].sort((a, b) => a - b).map((car) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = `★ #${car}`;
      b.dataset.car = String(car);
      b.classList.toggle("selected", car === page.selected);
      b.onclick = () => select(car);
      return b;
    }),
  );
}

// -- connection state ------------------------------------------------------------

const TRANSPORT_NAMES = { ws: "WebSocket", sse: "HTTP streaming (SSE)", poll: "long-polling" };

function renderConnection(status, why) {
  if (status === "suspended" && why) $("conn").title = why;
  const states = [field.status, detail.status];
  let state = "connected";
  if (states.includes("suspended")) state = "suspended";
  else if (states.includes("reconnecting")) state = "reconnecting";
  else if (states.some((s) => s === "connecting" || s === "idle")) state = "connecting";
  const conn = $("conn");
  conn.dataset.state = state;
  conn.dataset.transport = field.transport; // ws, sse or poll (docs/protocol.md)
  if (state === "connected") conn.title = `connected via ${TRANSPORT_NAMES[field.transport]}`;
  $("conn-text").textContent = state;
  $("conn-retry").hidden = state !== "suspended";
}

// -- rendering, at most once a frame ---------------------------------------------

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(render);
}

function render() {
  pending = false;
  const rows = boardRows(field.state, page.entries);
  board.render(rows, page.selected, page.favourites);
  renderBanner(banner, rows, page.raceStart, page.flagEvent);
  const cars = field.state.cars("position").map((car) => ({
    car,
    x: field.state.value(car, "track_x"),
    y: field.state.value(car, "track_y"),
    pos: field.state.value(car, "race_position"),
  }));
  map.draw(cars, page.selected, page.favourites);
  const car = page.selected;
  carPanel.render(
    car,
    car === null ? "" : page.entries.get(car)?.driver,
    (name) => (car === null ? null : detail.state.value(car, name) ?? field.state.value(car, name)),
    page.history,
  );
}

// -- streams -----------------------------------------------------------------------

function onEvent(msg) {
  if (msg.race !== page.race) resetRace(msg.race);
  if (msg.kind === "race_start") setRaceStart(msg.data ?? {});
  if (msg.kind === "flag") page.flagEvent = { tick: msg.tick, ...msg.data };
  const text = eventText(msg, page.entries);
  if (text) addLog(text);
  schedule();
}

function onNotice(msg, stream) {
  addLog(`${stream.name}: ${msg.message ?? msg.code}`);
  if (msg.code === "race_changed") loadRace();
  if (msg.error && msg.code === "unknown_car") {
    // A favourite that is not in this race: forget it, subscribe to the rest.
    const known = new Set(field.state.cars("timing"));
    for (const car of page.favourites) if (!known.has(car)) page.favourites.delete(car);
    if (page.selected !== null && !known.has(page.selected)) page.selected = null;
    saveChoice();
    renderFavourites();
    detail.setCars(detailCars());
  }
}

const catalogue = await Catalogue.load();
const board = new Leaderboard(document.querySelector("#leaderboard tbody"), {
  onSelect: select,
  onFavourite: toggleFavourite,
});
const map = new TrackMap($("map"));
const carPanel = new CarPanel($("car-panel"));
const common = { url: wsUrl(), catalogue, codec, suspendAfterMs, onNotice, onState: renderConnection };

const field = new Stream({
  ...common,
  name: "field",
  groups: FIELD_GROUPS,
  cars: null,
  onEvent,
  onTick(msg, fresh) {
    if (msg.race !== page.race) {
      resetRace(msg.race);
      loadRace();
    }
    const moved = [];
    for (const car of fresh.keys()) {
      moved.push({ x: field.state.value(car, "track_x"), y: field.state.value(car, "track_y") });
    }
    map.learn(moved);
    if (page.selected === null && fresh.size) {
      // Nothing chosen yet: follow the leader.
      const leader = field.state.cars("timing").find((c) => field.state.value(c, "race_position") === 1);
      if (leader !== undefined) select(leader);
    }
    schedule();
  },
});

const detail = new Stream({
  ...common,
  name: "detail",
  groups: DETAIL_GROUPS,
  cars: detailCars(),
  onTick(msg, fresh) {
    for (const car of fresh.keys()) {
      const v = (name) => detail.state.value(car, name);
      page.history.push(car, msg.tick, { speed: v("speed") ?? fieldSpeed(car), throttle: v("throttle"), brake: v("brake"), g_lat: v("g_lat") });
    }
    schedule();
  },
});

function fieldSpeed(car) {
  return field.state.value(car, "speed");
}

$("conn-retry").onclick = () => {
  field.retry();
  detail.retry();
};

window.__slipstream = {
  field,
  detail,
  page,
  get ticks() {
    return field.ticks;
  },
  get markers() {
    return map.markers;
  },
  select,
  toggleFavourite,
};

renderFavourites();
await loadRace();
field.start();
detail.start();
schedule();
