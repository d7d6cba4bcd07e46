// Compiled by `npm test` (tsc --noEmit): the types describe the API the docs show.
import { connect, type Cursor, type Frame, type Item, type StateChange } from "@slipstream/client";

async function main(url: string, saved: Cursor | null): Promise<Cursor | null> {
  const client = connect(url, { cars: [24, 48], groups: ["tyres"], codec: "sparse", cursor: saved });
  const off = client.on("frame", (frame: Frame) => {
    const temp: number | null = frame.values["tyre_temp_lf_middle"] ?? null;
    console.log(frame.race, frame.tick, frame.car, temp);
  });
  client.on("state", (s: StateChange) => {
    if (s.state === "suspended" && s.refused) client.setToken("a fresh token");
  });
  await client.subscribe({ cars: [7], groups: ["engine", "tyres"] });
  for await (const item of client) {
    const it: Item = item;
    if (it.type === "frame" && it.tick > 100) break;
    if (it.type === "notice" && it.error) console.log(it.code, it.message);
  }
  off();
  client.close();
  return client.cursor;
}

void main("http://127.0.0.1:8000", { race: "R1", tick: 3 });
