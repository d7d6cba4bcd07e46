// The fan page's leaderboard, race-control banner and race-control log.

const PIT_TEXT = ["", "PIT", "STOP", "OUT"];
const FLAG_NAMES = ["green", "yellow", "red", "white", "checkered"];

function fmtLapTime(s) {
  if (s === null || !(s > 0)) return "";
  const m = Math.floor(s / 60);
  const rest = (s - 60 * m).toFixed(3).padStart(6, "0");
  return m > 0 ? `${m}:${rest}` : (s).toFixed(3);
}

function fmtGap(pos, gap, lapsDown) {
  if (pos === 1) return "Leader";
  if (lapsDown !== null && lapsDown >= 1) return `+${lapsDown} L`;
  if (gap === null) return "";
  return `+${gap.toFixed(2)}`;
}

/** Rows of the leaderboard: one per car holding timing values, in race order. */
export function boardRows(state, entries) {
  const rows = [];
  for (const car of state.cars("timing")) {
    const v = (name) => state.value(car, name);
    rows.push({
      car,
      pos: v("race_position"),
      driver: entries.get(car)?.driver ?? "",
      gap: v("gap_to_leader"),
      lapsDown: v("laps_down"),
      last: v("last_lap_time"),
      pit: v("pit_status"),
      lap: v("lap"),
      flag: v("flag"),
    });
  }
  rows.sort((a, b) => (a.pos ?? 1e9) - (b.pos ?? 1e9) || a.car - b.car);
  return rows;
}

export class Leaderboard {
  constructor(tbody, { onSelect, onFavourite }) {
    this.tbody = tbody;
    this.rows = new Map(); // car -> {tr, cells}
    this.onSelect = onSelect;
    this.onFavourite = onFavourite;
    tbody.addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr");
      if (!tr) return;
      const car = Number(tr.dataset.car);
      if (ev.target.classList.contains("star")) this.onFavourite(car);
      else this.onSelect(car);
    });
  }

  _row(car) {
    let row = this.rows.get(car);
    if (row) return row;
    const tr = document.createElement("tr");
    tr.dataset.car = String(car);
    const names = ["pos", "fav", "car", "driver", "gap", "last", "pit"];
    const cells = {};
    for (const name of names) {
      const td = document.createElement("td");
      td.className = name;
      tr.appendChild(td);
      cells[name] = td;
    }
    cells.fav.innerHTML = '<span class="star" role="button" title="favourite">★</span>';
    cells.car.textContent = `#${car}`;
    row = { tr, cells, text: {} };
    this.rows.set(car, row);
    return row;
  }

  static _set(row, name, text) {
    if (row.text[name] !== text) {
      row.text[name] = text;
      row.cells[name].textContent = text;
    }
  }

  render(rows, selected, favourites) {
    let previous = null;
    for (const r of rows) {
      const row = this._row(r.car);
      Leaderboard._set(row, "pos", r.pos === null ? "–" : String(r.pos));
      Leaderboard._set(row, "driver", r.driver);
      Leaderboard._set(row, "gap", fmtGap(r.pos, r.gap, r.lapsDown));
      Leaderboard._set(row, "last", fmtLapTime(r.last));
      Leaderboard._set(row, "pit", PIT_TEXT[r.pit ?? 0] ?? "");
      row.tr.classList.toggle("selected", r.car === selected);
      row.cells.fav.firstChild.classList.toggle("on", favourites.has(r.car));
      // Move rows only when out of place: the DOM keeps scrolling and hover stable.
      const want = previous === null ? this.tbody.firstChild : previous.nextSibling;
      if (want !== row.tr) this.tbody.insertBefore(row.tr, want);
      previous = row.tr;
    }
  }
}

/** The banner: flag, lap of the leader, laps to go. */
export function renderBanner(el, rows, raceStart, flagEvent) {
  const leader = rows.find((r) => r.pos === 1) ?? rows[0];
  let flag = leader?.flag ?? null;
  if (flag === null && flagEvent) flag = FLAG_NAMES.indexOf(flagEvent.flag);
  const name = flag !== null && flag >= 0 ? FLAG_NAMES[flag] ?? "none" : "none";
  el.banner.dataset.flag = name;
  el.flag.textContent = name === "none" ? "—" : name;
  const laps = raceStart?.laps ?? null;
  const done = leader?.lap ?? null; // the `lap` channel counts laps completed
  const lap = done === null ? null : laps === null ? done + 1 : Math.min(done + 1, laps);
  el.lap.textContent = `Lap ${lap ?? "—"} / ${laps ?? "—"}`;
  el.toGo.textContent = laps !== null && done !== null ? `${Math.max(0, laps - done)} to go` : "";
}

/** One line of the race-control log for an event, or null for events not logged. */
export function eventText(msg, entries) {
  const d = msg.data ?? {};
  const who = (car) => `#${car}${entries.get(car)?.driver ? ` ${entries.get(car).driver}` : ""}`;
  switch (msg.kind) {
    case "race_start":
      return `Race start: ${d.title ?? d.track ?? msg.race}${d.laps ? `, ${d.laps} laps` : ""}`;
    case "flag":
      return `${String(d.flag ?? "").toUpperCase()} flag${d.lap !== undefined ? ` (lap ${d.lap})` : ""}`;
    case "pit_in":
      return `${who(msg.cars[0])} pits (lap ${d.lap ?? "?"})`;
    case "pit_out":
      return `${who(msg.cars[0])} leaves the pits${d.stationary_s ? ` after ${Number(d.stationary_s).toFixed(1)} s` : ""}`;
    case "lead_change":
      return `${who(msg.cars[0])} takes the lead${msg.cars[1] !== undefined ? ` from #${msg.cars[1]}` : ""}`;
    case "incident":
      return `Incident: ${msg.cars.map((c) => `#${c}`).join(", ")}${d.retired ? " (retired)" : ""}`;
    case "race_end":
      return `Race over (${d.reason ?? "finished"})${d.order?.length ? `: winner #${d.order[0]}` : ""}`;
    default:
      return null;
  }
}
