// Use the web app (`stdgen app`) in headless Chromium as a person would.
//
// Usage: node app_check.mjs URL OUT_DIR [--bad FILE]... [--good FILE] [--screenshot NAME]
// 1. For each --bad FILE: upload it; record the error the page shows (its toast) and whether the
//    preview stayed empty; dismiss the error.
// 2. With --good FILE: upload it, wait for the preview, press Generate, record when the A-pose
//    picture, the six views and the 3D viewer appear, then save each download button's file into
//    OUT_DIR (character.glb, body.glb, clothes.glb, hair.glb), pick "hair" in the part selector and
//    record the file the viewer then shows. --screenshot NAME writes OUT_DIR/NAME (the whole page).
// Prints one JSON object: {errors: [{file, message}], run: {...}, pageErrors}. Exits 1 only if the
// browser cannot run.
//
// Chromium is the system one (Debian's `chromium`, or $STDGEN_CHROMIUM); nothing is downloaded.
// Requests to anything but the app's own host are refused, so nothing leaves the machine.
import { mkdir, writeFile, rm, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const [url, outDir] = args;
const bad = [];
let good = null;
let screenshot = null;
for (let i = 2; i < args.length; i += 2) {
  if (args[i] === "--bad") bad.push(args[i + 1]);
  else if (args[i] === "--good") good = args[i + 1];
  else if (args[i] === "--screenshot") screenshot = args[i + 1];
  else { console.error(`unknown argument ${args[i]}`); process.exit(1); }
}
if (!url || !outDir) {
  console.error("usage: node app_check.mjs URL OUT_DIR [--bad FILE]... [--good FILE] [--screenshot NAME]");
  process.exit(1);
}
await mkdir(outDir, { recursive: true });
const origin = new URL(url).origin;
const TIMEOUT = 90000;

const userDataDir = await mkdtemp(path.join(tmpdir(), "stdgen-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.STDGEN_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 1000 },
  acceptDownloads: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // WebGL on the CPU (SwiftShader), for the 3D viewer: there is no GPU here.
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
  ],
});

const result = { errors: [], run: null, pageErrors: [], blocked: [] };
const t0 = Date.now();
const since = () => (Date.now() - t0) / 1000;
try {
  const page = await context.newPage();
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  await context.route("**/*", (route) => {
    const u = route.request().url();
    if (u.startsWith(origin) || u.startsWith("data:") || u.startsWith("blob:")) return route.continue();
    result.blocked.push(u);
    return route.abort();
  });
  await page.goto(url);
  const upload = page.locator("#stdgen-upload input[type=file]");
  await upload.waitFor({ state: "attached", timeout: TIMEOUT });

  const toasts = page.locator('[data-testid="toast-body"]');
  for (const file of bad) {
    await upload.setInputFiles(file);
    let message = null;
    try {
      await toasts.first().waitFor({ state: "visible", timeout: 30000 });
      message = (await toasts.first().locator('[data-testid="toast-text"], .toast-text').first().innerText()).trim();
    } catch (e) {
      message = null;
    }
    const previewEmpty = (await page.locator("#stdgen-preview img").count()) === 0;
    result.errors.push({ file: path.basename(file), message, previewEmpty });
    // Dismiss the error(s) and clear the upload before the next file.
    for (const close of await page.locator('[data-testid="toast-close"]').all()) await close.click().catch(() => {});
    await toasts.first().waitFor({ state: "detached", timeout: 15000 }).catch(() => {});
    const clear = page.locator('#stdgen-upload button[aria-label="Clear"]');
    if (await clear.count()) await clear.first().click({ timeout: 3000 }).catch(() => {});
  }

  if (good) {
    const run = { times: {} };
    result.run = run;
    try {
    await upload.setInputFiles(good);
    await page.locator("#stdgen-preview img").waitFor({ timeout: TIMEOUT });
    run.times.preview = since();
    await page.locator("#stdgen-generate").click();
    const clicked = since();
    await page.locator("#stdgen-canonical img").waitFor({ timeout: TIMEOUT });
    run.times.canonical = since() - clicked;
    await page.locator("#stdgen-views img").first().waitFor({ timeout: TIMEOUT });
    run.times.views = since() - clicked;
    run.viewTiles = await page.locator("#stdgen-views img").count();
    const whole = page.locator("#stdgen-download-whole");
    await whole.waitFor({ state: "visible", timeout: TIMEOUT });
    run.times.downloads = since() - clicked;
    await page.locator("#stdgen-model canvas").waitFor({ timeout: TIMEOUT });
    run.times.viewer = since() - clicked;
    run.status = (await page.locator("#stdgen-status").innerText()).trim();
    run.seconds = (await page.locator("#stdgen-seconds").innerText()).trim();
    run.files = {};
    for (const name of ["whole", "body", "clothes", "hair"]) {
      const [download] = await Promise.all([
        page.waitForEvent("download", { timeout: TIMEOUT }),
        page.locator(`#stdgen-download-${name}`).click(),
      ]);
      const target = path.join(outDir, download.suggestedFilename());
      await download.saveAs(target);
      run.files[name] = target;
    }
    await page.waitForTimeout(1500);  // let the viewer draw the character for the screenshot
    if (screenshot) await page.screenshot({ path: path.join(outDir, screenshot), fullPage: true });
    // The part selector: the viewer then shows hair.glb.
    await page.locator("#stdgen-part label", { hasText: "hair" }).click();
    await page.waitForFunction(() => /hair\.glb/.test(document.querySelector("#stdgen-model").innerHTML), null,
                               { timeout: 30000 }).catch(() => {});
    run.viewerAfterPart = (await page.locator("#stdgen-model").innerHTML()).match(/[\w.-]+\.glb/g) || [];
    } catch (e) {
      // What the page showed when it went wrong, for the person reading the failure.
      run.error = String(e).split("\n")[0];
      run.failureShot = path.join(outDir, "failure.png");
      await page.screenshot({ path: run.failureShot, fullPage: true });
      run.failureToasts = await toasts.allInnerTexts();
    }
  }
  await page.close();
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}
await writeFile(path.join(outDir, "app_check.json"), JSON.stringify(result, null, 1));
console.log(JSON.stringify(result, null, 1));
