// The fan page's track map: every car at its (track_x, track_y) in metres, on an
// outline of the track learnt from where the cars have been.

const MAX_POINTS = 12000;

export class TrackMap {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.points = []; // [x, y] metres, sampled from every car
    this.bounds = null; // {minX, maxX, minY, maxY}
    this.markers = {}; // car -> [px, py] of the last drawing (read by tests)
    // The outline is drawn to its own canvas and redrawn only as it grows.
    this.outline = document.createElement("canvas");
    this.outlineKey = "";
    this.added = 0;
    this._resize();
    new ResizeObserver(() => this._resize()).observe(canvas);
  }

  _resize() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, Math.round(this.canvas.clientWidth * ratio));
    const height = Math.round((width * 7) / 10);
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
  }

  /** Add the cars' current positions ([{car, x, y}]) to the outline. */
  learn(cars) {
    for (const { x, y } of cars) {
      if (x === null || y === null) continue;
      this.added++;
      if (this.points.length >= MAX_POINTS) this.points[Math.floor(Math.random() * MAX_POINTS)] = [x, y];
      else this.points.push([x, y]);
      const b = this.bounds;
      if (b === null) this.bounds = { minX: x, maxX: x, minY: y, maxY: y };
      else {
        b.minX = Math.min(b.minX, x);
        b.maxX = Math.max(b.maxX, x);
        b.minY = Math.min(b.minY, y);
        b.maxY = Math.max(b.maxY, y);
      }
    }
  }

  _transform() {
    const { width, height } = this.canvas;
    const b = this.bounds;
    const pad = 0.08;
    const spanX = Math.max(1, b.maxX - b.minX);
    const spanY = Math.max(1, b.maxY - b.minY);
    const scale = Math.min((width * (1 - 2 * pad)) / spanX, (height * (1 - 2 * pad)) / spanY);
    const ox = (width - spanX * scale) / 2;
    const oy = (height - spanY * scale) / 2;
    // North up: y grows upwards in metres, downwards on the canvas.
    return (x, y) => [ox + (x - b.minX) * scale, height - (oy + (y - b.minY) * scale)];
  }

  /** Draw the outline and the cars ([{car, x, y, pos}]), highlighting `selected`/`favourites`. */
  draw(cars, selected, favourites) {
    const ctx = this.ctx;
    const { width, height } = this.canvas;
    ctx.clearRect(0, 0, width, height);
    if (this.bounds === null) {
      ctx.fillStyle = "#8a94a3";
      ctx.font = `${Math.round(width / 40)}px system-ui, sans-serif`;
      ctx.fillText("waiting for positions…", 20, 30);
      return;
    }
    const at = this._transform();
    const unit = width / 600;
    const b = this.bounds;
    const key = [width, height, b.minX, b.maxX, b.minY, b.maxY].join();
    if (key !== this.outlineKey || this.added >= 400) {
      this.outlineKey = key;
      this.added = 0;
      this.outline.width = width;
      this.outline.height = height;
      const octx = this.outline.getContext("2d");
      octx.fillStyle = "#2b333d";
      for (const [x, y] of this.points) {
        const [px, py] = at(x, y);
        octx.fillRect(px - 2 * unit, py - 2 * unit, 4 * unit, 4 * unit);
      }
    }
    ctx.drawImage(this.outline, 0, 0);
    const markers = {};
    const ordered = [...cars].sort((a, b) => (b.pos ?? 99) - (a.pos ?? 99)); // leaders on top
    for (const c of ordered) {
      if (c.x === null || c.y === null) continue;
      const [px, py] = at(c.x, c.y);
      markers[c.car] = [Math.round(px * 10) / 10, Math.round(py * 10) / 10];
      const mine = c.car === selected || favourites.has(c.car);
      const hue = Math.round(((c.pos ?? 40) - 1) * 7) % 360;
      ctx.beginPath();
      ctx.arc(px, py, (mine ? 9 : 6) * unit, 0, 2 * Math.PI);
      ctx.fillStyle = c.car === selected ? "#4cc2ff" : `hsl(${hue} 70% 55%)`;
      ctx.fill();
      if (mine) {
        ctx.lineWidth = 2 * unit;
        ctx.strokeStyle = "#fff";
        ctx.stroke();
      }
      if (mine || (c.pos !== null && c.pos <= 3)) {
        ctx.fillStyle = "#e6e9ee";
        ctx.font = `${Math.round(11 * unit)}px system-ui, sans-serif`;
        ctx.fillText(`#${c.car}`, px + 10 * unit, py - 6 * unit);
      }
    }
    this.markers = markers;
  }
}
