// Copy the front-end's files into the broadcast node's served assets.
//
//   npm run build                 (in web/) writes into ../broadcast/static/
//   node scripts/build-static.mjs --out DIR   writes the same tree under DIR
//
// No bundler: the pages load plain ES modules.  What is copied, from where:
//   node_modules (vendor libraries, served locally: no CDN) -> static/vendor/
//   web/src/*.js (the page code and the codec decoders)     -> static/js/
// The copies are committed, so `pip install . && slipstream run` serves working
// pages without npm; tests/browser/test_static_build.py checks they match.

import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const out = outIndex >= 0 ? resolve(args[outIndex + 1]) : resolve(web, "..", "broadcast", "static");

const modules = join(web, "node_modules");
export const VENDOR = [
  // [source under node_modules, file name under static/vendor/]
  ["uplot/dist/uPlot.esm.js", "uPlot.esm.js"],
  ["uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["uplot/LICENSE", "uPlot.LICENSE.txt"],
  ["@msgpack/msgpack/dist.umd/msgpack.min.js", "msgpack.min.js"],
  ["@msgpack/msgpack/LICENSE", "msgpack.LICENSE.txt"],
  ["@ably/vcdiff-decoder/dist/vcdiff-decoder.min.js", "vcdiff-decoder.min.js"],
  ["@ably/vcdiff-decoder/LICENSE", "vcdiff-decoder.LICENSE.txt"],
];

function copy(source, target) {
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(source, target);
  return target;
}

const written = [];
for (const [source, name] of VENDOR) {
  written.push(copy(join(modules, source), join(out, "vendor", name)));
}
for (const name of readdirSync(join(web, "src")).filter((n) => n.endsWith(".js")).sort()) {
  written.push(copy(join(web, "src", name), join(out, "js", name)));
}
console.log(`build-static: ${written.length} files -> ${out}`);
