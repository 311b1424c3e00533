// Builds the console into src/aiaas/console/dist: index.html and content-hashed files under assets/.
// The output is byte-for-byte reproducible (no timestamps, no source maps, no absolute paths), so CI
// can rebuild it and compare with the committed copy (.ci/console).
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, "../aiaas/console/dist");
const assets = path.join(dist, "assets");

const hashed = (name, ext, bytes) =>
  `${name}-${createHash("sha256").update(bytes).digest("hex").slice(0, 10)}.${ext}`;

async function build() {
  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: { app: "src/main.jsx" },
    bundle: true,
    minify: true,
    format: "esm",
    target: ["es2020"],
    jsx: "automatic",
    jsxImportSource: "preact",
    sourcemap: false,
    legalComments: "eof",
    charset: "utf8",
    write: false,
    outdir: "out",
    entryNames: "[name]",
    logLevel: "warning",
  });
  const files = new Map();
  for (const file of result.outputFiles) {
    const ext = path.extname(file.path).slice(1);
    files.set(ext, { name: hashed("app", ext, file.contents), bytes: file.contents });
  }
  const icon = await readFile(path.join(here, "src/icon.svg"));
  const iconName = hashed("icon", "svg", icon);
  const page = (await readFile(path.join(here, "src/index.html"), "utf8"))
    .replace("%ICON%", `assets/${iconName}`)
    .replace("%CSS%", `assets/${files.get("css").name}`)
    .replace("%JS%", `assets/${files.get("js").name}`);

  await rm(dist, { recursive: true, force: true });
  await mkdir(assets, { recursive: true });
  for (const { name, bytes } of files.values()) await writeFile(path.join(assets, name), bytes);
  await writeFile(path.join(assets, iconName), icon);
  await writeFile(path.join(dist, "index.html"), page);
  for (const { name, bytes } of files.values()) console.log(`${name}  ${bytes.length} bytes`);
}

await build();
if (process.argv.includes("--watch")) {
  const { watch } = await import("node:fs");
  let timer = null;
  watch(path.join(here, "src"), { recursive: true }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => build().catch((e) => console.error(e.message)), 100);
  });
  console.log("watching src/ ...");
}
