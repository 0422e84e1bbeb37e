// Bundles the app into one directory: `node build.mjs <outdir>` (build.rs passes OUT_DIR/web;
// the browser suite its own). The SDK (`@parley/client`, ../js) is bundled from its sources, its
// dependencies resolved from this package's node_modules, so it needs no build or install of its
// own.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(process.argv[2] ?? join(here, "dist"));

await mkdir(outdir, { recursive: true });
try {
  await build({
  entryPoints: [join(here, "src/main.ts")],
  bundle: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  outfile: join(outdir, "app.js"),
  sourcemap: "linked",
  minify: true,
  alias: { "@parley/client": join(here, "../js/src/index.ts") },
  nodePaths: [join(here, "node_modules")],
  logLevel: "warning",
  });
} catch {
  // esbuild has printed the errors.
  process.exit(1);
}
await copyFile(join(here, "index.html"), join(outdir, "index.html"));
await copyFile(join(here, "src/style.css"), join(outdir, "style.css"));
