// The fan page's car panel: gauges (speed, rpm, gear, throttle, brake), tyres
// (temperatures and pressures coloured by range) and the last minute's charts (uPlot).

import uPlot from "../vendor/uPlot.esm.js";

export const HISTORY_TICKS = 120; // one minute at 2 Hz
const CORNERS = [["lf", "front left"], ["rf", "front right"], ["lr", "rear left"], ["rr", "rear right"]];
const BANDS = ["inner", "middle", "outer"];
//: Tyre temperature bands (degC): cold below, ideal between, hot above.
export const TYRE_TEMP_C = { cold: 70, ideal: [85, 110], hot: 125 };
//: Tyre pressure bands per corner (kPa), for an oval's stagger (right side higher):
//: low below the first, high above the second.
export const TYRE_PRESSURE_KPA = { lf: [145, 195], rf: [280, 385], lr: [145, 195], rr: [265, 370] };

/** Colour of a tyre temperature (blue cold, green ideal, red hot). */
export function tempColour(c) {
  if (c === null) return "#333";
  const { cold, ideal, hot } = TYRE_TEMP_C;
  let hue;
  if (c <= cold) hue = 220;
  else if (c < ideal[0]) hue = 220 - (100 * (c - cold)) / (ideal[0] - cold);
  else if (c <= ideal[1]) hue = 120;
  else if (c < hot) hue = 120 - (120 * (c - ideal[1])) / (hot - ideal[1]);
  else hue = 0;
  return `hsl(${Math.round(hue)} 75% 55%)`;
}

export function tempClass(c) {
  if (c === null) return "none";
  if (c < TYRE_TEMP_C.cold) return "cold";
  if (c > TYRE_TEMP_C.hot) return "hot";
  if (c >= TYRE_TEMP_C.ideal[0] && c <= TYRE_TEMP_C.ideal[1]) return "ideal";
  return "warm";
}

function drawArc(canvas, value, max, colour) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const cx = width / 2;
  const cy = height - 8;
  const r = Math.min(width / 2, height) - 12;
  ctx.lineWidth = 12;
  ctx.lineCap = "round";
  ctx.strokeStyle = "#262c35";
  ctx.beginPath();
  ctx.arc(cx, cy, r, Math.PI, 2 * Math.PI);
  ctx.stroke();
  if (value !== null) {
    const f = Math.max(0, Math.min(1, value / max));
    ctx.strokeStyle = colour;
    ctx.beginPath();
    ctx.arc(cx, cy, r, Math.PI, Math.PI + f * Math.PI);
    ctx.stroke();
  }
}

/** Per-car history of the charted channels, newest last, at most HISTORY_TICKS. */
export class History {
  constructor() {
    this.cars = new Map();
  }

  push(car, tick, values) {
    let h = this.cars.get(car);
    if (!h) {
      h = { t: [], speed: [], throttle: [], brake: [], g_lat: [] };
      this.cars.set(car, h);
    }
    if (h.t.length && tick <= h.t[h.t.length - 1] * 2) return; // replayed tick already held
    h.t.push(tick / 2);
    for (const name of ["speed", "throttle", "brake", "g_lat"]) h[name].push(values[name]);
    if (h.t.length > HISTORY_TICKS) for (const k of Object.keys(h)) h[k].shift();
  }

  clear() {
    this.cars.clear();
  }
}

function chartOptions(title, width, series, range) {
  return {
    title,
    width,
    height: 110,
    legend: { show: true, live: false },
    cursor: { show: false },
    scales: { x: { time: false }, y: { range } },
    axes: [
      {
        stroke: "#8a94a3",
        grid: { stroke: "#262c35" },
        incrs: [5, 10, 15, 30, 60, 120],
        values: (u, ticks) => ticks.map((s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`),
      },
      { stroke: "#8a94a3", grid: { stroke: "#262c35" }, size: 44 },
    ],
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 1.5, points: { show: false } }))],
  };
}

export class CarPanel {
  constructor(root) {
    this.root = root;
    const $ = (id) => root.querySelector(`#${id}`);
    this.el = {
      number: $("car-number"), driver: $("car-driver"), speed: $("v-speed"), rpm: $("v-rpm"),
      gear: $("v-gear"), throttle: $("v-throttle"), brake: $("v-brake"), bThrottle: $("b-throttle"),
      bBrake: $("b-brake"), gSpeed: $("g-speed"), gRpm: $("g-rpm"), tyres: $("tyres"), charts: $("charts"),
    };
    this.tyreCells = {};
    for (const [corner, label] of CORNERS) {
      const div = document.createElement("div");
      div.className = "tyre";
      div.dataset.corner = corner;
      div.innerHTML = `<div>${label}</div><div class="temps">${BANDS.map(
        (b) => `<span class="temp" data-band="${b}" title="${b}">—</span>`,
      ).join("")}</div><div class="pressure">pressure <b>—</b> kPa</div>`;
      this.el.tyres.appendChild(div);
      this.tyreCells[corner] = {
        temps: [...div.querySelectorAll(".temp")],
        pressure: div.querySelector(".pressure"),
      };
    }
    this.charts = null;
  }

  _makeCharts() {
    const width = Math.max(240, this.el.charts.clientWidth);
    const empty = [[], []];
    const mk = (title, series, range) => {
      const div = document.createElement("div");
      div.className = "chart";
      this.el.charts.appendChild(div);
      const data = [[], ...series.map(() => [])];
      return new uPlot(chartOptions(title, width, series, range), data.length ? data : empty, div);
    };
    this.charts = {
      speed: mk("speed (mph)", [["speed", "#4cc2ff"]], [0, 220]),
      pedals: mk("throttle / brake (%)", [["throttle", "#35c46a"], ["brake", "#ef4b4b"]], [0, 100]),
      glat: mk("lateral g", [["g_lat", "#f2c230"]], (u, min, max) => [Math.min(-1, min), Math.max(1, max)]),
    };
    new ResizeObserver(() => {
      const w = Math.max(240, this.el.charts.clientWidth);
      for (const chart of Object.values(this.charts)) if (chart.width !== w) chart.setSize({ width: w, height: 110 });
    }).observe(this.el.charts);
  }

  /** Show `car`: values(name) gives its latest values, history its last minute. */
  render(car, driver, values, history) {
    const el = this.el;
    el.number.textContent = car === null ? "—" : `#${car}`;
    el.driver.textContent = driver ?? "";
    if (car === null) return;
    const v = (name) => values(name);
    const fmt = (x, digits = 0) => (x === null ? "—" : x.toFixed(digits));
    el.speed.textContent = fmt(v("speed"));
    el.rpm.textContent = fmt(v("rpm"));
    const gear = v("gear");
    el.gear.textContent = gear === null ? "—" : gear === 0 ? "N" : String(gear);
    el.throttle.textContent = fmt(v("throttle"));
    el.brake.textContent = fmt(v("brake"));
    el.bThrottle.style.width = `${v("throttle") ?? 0}%`;
    el.bBrake.style.width = `${v("brake") ?? 0}%`;
    drawArc(el.gSpeed, v("speed"), 220, "#4cc2ff");
    const rpm = v("rpm");
    drawArc(el.gRpm, rpm, 10000, rpm !== null && rpm > 9000 ? "#ef4b4b" : "#35c46a");
    for (const [corner] of CORNERS) {
      const cells = this.tyreCells[corner];
      BANDS.forEach((band, i) => {
        const t = v(`tyre_temp_${corner}_${band}`);
        const span = cells.temps[i];
        span.textContent = fmt(t);
        span.style.background = tempColour(t);
        span.dataset.range = tempClass(t);
      });
      const p = v(`tyre_pressure_${corner}`);
      cells.pressure.querySelector("b").textContent = fmt(p);
      const [low, high] = TYRE_PRESSURE_KPA[corner];
      const range = p === null ? "none" : p < low ? "low" : p > high ? "high" : "ok";
      cells.pressure.dataset.range = range;
      cells.pressure.classList.toggle("low", range === "low");
      cells.pressure.classList.toggle("high", range === "high");
    }
    if (this.charts === null) this._makeCharts();
    const h = history.cars.get(car) ?? { t: [], speed: [], throttle: [], brake: [], g_lat: [] };
    this.charts.speed.setData([h.t, h.speed]);
    this.charts.pedals.setData([h.t, h.throttle, h.brake]);
    this.charts.glat.setData([h.t, h.g_lat]);
  }
}
