// A real broadcast node for these tests: tests/client/js_harness.py (a node on port 0,
// a proxy in front of it that can drop connections and strip Upgrade), started per test
// file and driven over its stdin/stdout.  Run from the repository root's venv, or set
// SLIPSTREAM_PYTHON to its python.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export async function startNode({ auth = false } = {}) {
  const python = process.env.SLIPSTREAM_PYTHON || "python";
  const args = ["-m", "tests.client.js_harness", ...(auth ? ["--auth"] : [])];
  const child = spawn(python, args, { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const pending = [];
  lines.on("line", (line) => pending.shift()?.(JSON.parse(line)));
  const next = () =>
    new Promise((resolveLine, reject) => {
      const timer = setTimeout(() => reject(new Error("the node harness did not answer in 30 s")), 30000);
      pending.push((obj) => {
        clearTimeout(timer);
        if (obj.error) reject(new Error(obj.error));
        else resolveLine(obj);
      });
    });
  const ready = await next();
  return {
    url: ready.url,
    proxy: ready.proxy,
    async send(command) {
      const answer = next();
      child.stdin.write(JSON.stringify(command) + "\n");
      return answer;
    },
    async stop() {
      child.stdin.end();
      await new Promise((done) => {
        const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
        child.on("exit", () => {
          clearTimeout(timer);
          done();
        });
      });
    },
  };
}

/** Collects a client's items; `until(predicate)` resolves with the first match. */
export function collect(client) {
  const items = [];
  const waiters = [];
  for (const kind of ["frame", "event", "notice", "state"]) {
    client.on(kind, (item) => {
      const entry = { type: kind, ...item };
      items.push(entry);
      for (const w of [...waiters]) {
        if (w.predicate(entry)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(entry);
        }
      }
    });
  }
  return {
    items,
    frames: () => items.filter((i) => i.type === "frame"),
    states: () => items.filter((i) => i.type === "state"),
    until(predicate, timeoutMs = 10000, what = "an item") {
      const found = items.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolveItem, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          predicate,
          resolve: (item) => {
            clearTimeout(timer);
            resolveItem(item);
          },
        });
      });
    },
  };
}

export const isFrame = (tick, car) => (i) => i.type === "frame" && i.tick === tick && (car === undefined || i.car === car);
export const isState = (state) => (i) => i.type === "state" && i.state === state;
