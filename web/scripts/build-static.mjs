// Build the front-end into the broadcast node's served assets.
//
//   npm run build                 (in web/) writes into ../broadcast/static/
//   node scripts/build-static.mjs --out DIR   writes the same tree under DIR
//
// No bundler for our own code: the pages load plain ES modules, and an import map in
// each page resolves the bare names.  What is written, from where:
//   vendor/ (committed)   third-party builds, served locally (no CDN): uPlot's ESM file,
//                         and single-file ESM builds (esbuild) of the client package's
//                         declared dependencies, @msgpack/msgpack and @ably/vcdiff-decoder,
//                         from clients/js/node_modules (the versions the package uses)
//   js/ (committed)       web/src/*.js, the page code
//   client/ (not committed: built)  clients/js/src/*.js, @slipstream/client's source,
//                         of which the repository holds one copy; `pip install .` makes
//                         the same copy without npm (setup.py), so a fresh machine
//                         needs no node.
// tests/browser/test_static_build.py checks that the committed files match this build.

import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const client = resolve(web, "..", "clients", "js");
const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const out = outIndex >= 0 ? resolve(args[outIndex + 1]) : resolve(web, "..", "broadcast", "static");

const modules = join(web, "node_modules");
const clientModules = join(client, "node_modules");
export const VENDOR = [
  // [source, file name under static/vendor/]
  [join(modules, "uplot/dist/uPlot.esm.js"), "uPlot.esm.js"],
  [join(modules, "uplot/dist/uPlot.min.css"), "uPlot.min.css"],
  [join(modules, "uplot/LICENSE"), "uPlot.LICENSE.txt"],
  [join(clientModules, "@msgpack/msgpack/LICENSE"), "msgpack.LICENSE.txt"],
  [join(clientModules, "@ably/vcdiff-decoder/LICENSE"), "vcdiff-decoder.LICENSE.txt"],
];
export const ESM = [
  // [package under clients/js/node_modules, its ESM entry, file name under static/vendor/]
  ["@msgpack/msgpack", "dist.esm/index.mjs", "msgpack.mjs"],
  ["@ably/vcdiff-decoder", "lib/vcdiff_decoder.js", "vcdiff-decoder.mjs"],
];

function copy(source, target) {
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(source, target);
  return target;
}

const written = [];
for (const [source, name] of VENDOR) written.push(copy(source, join(out, "vendor", name)));
for (const [pkg, entry, name] of ESM) {
  const target = join(out, "vendor", name);
  buildSync({
    entryPoints: [join(clientModules, pkg, entry)],
    bundle: true,
    format: "esm",
    minify: true,
    legalComments: "inline",
    logLevel: "error",
    outfile: target,
  });
  written.push(target);
}
for (const name of readdirSync(join(web, "src")).filter((n) => n.endsWith(".js")).sort()) {
  written.push(copy(join(web, "src", name), join(out, "js", name)));
}
for (const name of readdirSync(join(client, "src")).filter((n) => n.endsWith(".js")).sort()) {
  written.push(copy(join(client, "src", name), join(out, "client", name)));
}
console.log(`build-static: ${written.length} files -> ${out}`);
