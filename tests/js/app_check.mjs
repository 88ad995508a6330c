// Use the web app (`stdgen app`) in headless Chromium as a person would.
//
// Usage: node app_check.mjs URL OUT_DIR ACTION...
// The actions, in the order given:
//   --upload FILE   upload a picture and wait for its preview;
//   --bad FILE      upload a file the app must refuse: record the error it shows (its toast) and
//                   whether the preview is empty; dismiss the error
//   (an upload first clears the file in the upload box, if any, with its Clear button);
//   --example N     click the N-th example picture and wait for its preview;
//   --generate      press Generate; record when the A-pose picture, the views sheet (and its size), the download
//                   buttons and the 3D viewer appear; save each download (character.glb, body.glb,
//                   clothes.glb, hair.glb) into OUT_DIR; pick "hair" in the part selector and record
//                   the file the viewer then shows;
//   --screenshot NAME  write OUT_DIR/NAME (the whole page).
// Prints one JSON object: {errors: [{file, message, previewEmpty}], runs: [...], pageErrors,
// blocked}; a step that failed ends the actions and is recorded with a screenshot. Exits 1 only if
// the browser cannot run.
//
// Chromium is the system one (Debian's `chromium`, or $STDGEN_CHROMIUM); nothing is downloaded.
// Requests to anything but the app's own host are refused, so nothing leaves the machine.
import { mkdir, writeFile, rm, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, outDir, ...rest] = process.argv.slice(2);
const actions = [];
for (let i = 0; i < rest.length; i++) {
  const a = rest[i];
  if (a === "--generate") actions.push([a]);
  else if (["--upload", "--bad", "--example", "--screenshot"].includes(a) && i + 1 < rest.length) actions.push([a, rest[++i]]);
  else { console.error(`unknown argument ${a}`); process.exit(1); }
}
if (!url || !outDir) {
  console.error("usage: node app_check.mjs URL OUT_DIR [--upload FILE | --bad FILE | --example N | --generate | --screenshot NAME]...");
  process.exit(1);
}
await mkdir(outDir, { recursive: true });
const origin = new URL(url).origin;
// The longest wait for one thing to appear ($STDGEN_APP_TIMEOUT_S; a real pipeline on a CPU takes minutes).
const TIMEOUT = 1000 * Number(process.env.STDGEN_APP_TIMEOUT_S || 90);

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

const result = { errors: [], runs: [], failed: null, pageErrors: [], blocked: [] };
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
  const clear = page.locator('#stdgen-upload button[aria-label="Clear"]');
  // A file shown in the upload box replaces its file input: clear it first, as a person would.
  const choose = async (file) => {
    if (await clear.count()) await clear.first().click({ timeout: 5000 }).catch(() => {});
    await upload.setInputFiles(file, { timeout: 30000 });
  };
  const preview = page.locator("#stdgen-preview img");
  for (const [action, arg] of actions) {
    const step = { action, arg };
    try {
      if (action === "--upload") {
        await choose(arg);
        await preview.waitFor({ timeout: TIMEOUT });
      } else if (action === "--example") {
        await page.locator("#stdgen-examples .thumbnail-item").nth(Number(arg)).click();
        await preview.waitFor({ timeout: TIMEOUT });
      } else if (action === "--screenshot") {
        await page.screenshot({ path: path.join(outDir, arg), fullPage: true });
      } else if (action === "--bad") {
        await choose(arg);
        let message = null;
        try {
          await toasts.first().waitFor({ state: "visible", timeout: 30000 });
          message = (await toasts.first().locator('[data-testid="toast-text"], .toast-text').first().innerText()).trim();
        } catch (e) {
          message = null;
        }
        await page.waitForTimeout(300);  // the preview is cleared before the check: let it settle
        result.errors.push({ file: path.basename(arg), message, previewEmpty: (await preview.count()) === 0 });
        // Dismiss the error(s) and clear the upload before the next file.
        for (const close of await page.locator('[data-testid="toast-close"]').all()) await close.click().catch(() => {});
        await toasts.first().waitFor({ state: "detached", timeout: 15000 }).catch(() => {});
      } else if (action === "--generate") {
        const run = { times: {} };
        result.runs.push(run);
        await page.locator("#stdgen-generate").click();
        const clicked = since();
        await page.locator("#stdgen-canonical img").waitFor({ timeout: TIMEOUT });
        run.times.canonical = since() - clicked;
        await page.locator("#stdgen-views img").first().waitFor({ timeout: TIMEOUT });
        run.times.views = since() - clicked;
        run.views = await page.locator("#stdgen-views img").first().evaluate((img) => new Promise((done) => {
          const size = () => done({ width: img.naturalWidth, height: img.naturalHeight });
          if (img.complete && img.naturalWidth) size(); else img.addEventListener("load", size, { once: true });
        }));
        await page.locator("#stdgen-download-whole").waitFor({ state: "visible", timeout: TIMEOUT });
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
        await page.waitForTimeout(1500);  // let the viewer draw the character (for a screenshot next)
        // The part selector: the viewer then shows hair.glb; back to the whole character.
        await page.locator("#stdgen-part label", { hasText: "hair" }).click();
        await page.waitForFunction(() => /hair\.glb/.test(document.querySelector("#stdgen-model").innerHTML), null,
                                   { timeout: 30000 }).catch(() => {});
        run.viewerAfterPart = (await page.locator("#stdgen-model").innerHTML()).match(/[\w.-]+\.glb/g) || [];
        await page.locator("#stdgen-part label", { hasText: "whole" }).click();
        await page.waitForFunction(() => /character\.glb/.test(document.querySelector("#stdgen-model").innerHTML),
                                   null, { timeout: 30000 }).catch(() => {});
        await page.waitForTimeout(1500);
      }
    } catch (e) {
      // What the page showed when it went wrong, for the person reading the failure.
      result.failed = { action, arg, error: String(e).split("\n")[0], toasts: await toasts.allInnerTexts(),
                        screenshot: path.join(outDir, "failure.png") };
      await page.screenshot({ path: result.failed.screenshot, fullPage: true });
      break;
    }
  }
  await page.close();
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}
await writeFile(path.join(outDir, "app_check.json"), JSON.stringify(result, null, 1));
console.log(JSON.stringify(result, null, 1));
