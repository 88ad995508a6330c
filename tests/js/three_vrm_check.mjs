// Load VRM files with three-vrm (the loader VRM apps use) inside headless Chromium.
//
// Usage: node three_vrm_check.mjs OUT_DIR FILE...
// For each FILE: loads it in a page, writes OUT_DIR/<basename>.png (a screenshot of the render)
// and prints one JSON array to stdout: per file {file, screenshot, report} where report is what
// three-vrm found (humanoid bones with world positions, meshes, materials, meta) or
// {ok: false, reason}. Page errors are part of the report. Exits 1 only if the browser cannot run.
//
// Chromium is the system one (Debian's `chromium`, or $STDGEN_CHROMIUM); nothing is downloaded.
// Files are served from a fake origin by Playwright's request routing, so no server is started
// and nothing leaves the machine.
import { mkdtemp, readFile, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ORIGIN = "http://stdgen.test";
const WIDTH = 512;
const HEIGHT = 768;

const [outDir, ...files] = process.argv.slice(2);
if (!outDir || files.length === 0) {
  console.error("usage: node three_vrm_check.mjs OUT_DIR FILE...");
  process.exit(1);
}
await mkdir(outDir, { recursive: true });

const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html", ".vrm": "model/gltf-binary", ".glb": "model/gltf-binary" };
const userDataDir = await mkdtemp(path.join(tmpdir(), "stdgen-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.STDGEN_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: WIDTH, height: HEIGHT },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // WebGL on the CPU (SwiftShader): there is no GPU here.
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
  ],
});

const results = [];
try {
  for (const file of files) {
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
    // Every request goes to the fake origin and is answered from disk; anything else is refused.
    await page.route("**/*", async (route) => {
      const url = new URL(route.request().url());
      if (url.origin !== ORIGIN) return route.abort();
      let local;
      if (url.pathname === "/model") local = file;
      else local = path.join(HERE, decodeURIComponent(url.pathname));
      if (!local.startsWith(HERE) && local !== file) return route.abort();
      try {
        const body = await readFile(local);
        return route.fulfill({ status: 200, body, contentType: TYPES[path.extname(local)] || "application/octet-stream" });
      } catch {
        return route.fulfill({ status: 404, body: "not found" });
      }
    });
    let report;
    try {
      await page.goto(`${ORIGIN}/three_vrm_page.html`);
      await page.waitForFunction(() => window.stdgenReady === true, null, { timeout: 60000 });
      report = await page.evaluate(([w, h]) => window.stdgenLoad("/model", w, h), [WIDTH, HEIGHT]);
    } catch (e) {
      report = { ok: false, reason: String(e) };
    }
    const shot = path.join(outDir, path.basename(file).replace(/\.[^.]+$/, "") + ".png");
    await page.screenshot({ path: shot });
    results.push({ file, screenshot: shot, report, pageErrors });
    await page.close();
  }
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(results, null, 1));
