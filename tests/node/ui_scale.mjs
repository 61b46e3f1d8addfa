// Plays one recorded answer into amygdala's live page (/ui) in real headless Chromium (Debian's, through
// playwright-core) and prints, as one JSON object, what the page computed for each token in three views: z-scores
// at the deepest layer, z-scores at the first layer, raw values at the first layer (its window.amygdalaReadout
// hook: values at the selected layer, top concept, colour strength). tests/test_serve_ui.py compares them with
// amygdala.readout.scale.
//
// argv[2]: JSON {chromium, url, prompt}.
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const seen = { pageErrors: [], views: [] };

const browser = await chromium.launch({ executablePath: config.chromium, args: ARGS, headless: true });
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
  page.on("pageerror", (error) => seen.pageErrors.push(error.message));
  await page.goto(config.url + "/ui");
  await page.waitForFunction(() => !/connecting/.test(document.getElementById("info").textContent));
  await page.selectOption("#mode", "completion");
  await page.fill("#prompt", config.prompt);
  await page.click("#send");
  await page.waitForFunction(() => /^(done|ended|failed)/.test(document.getElementById("status").dataset.state || ""),
                             null, { timeout: 60000 });
  const view = () => page.evaluate(() => ({
    layer: Number(document.getElementById("heat").dataset.layer),
    zsource: document.getElementById("zsource").textContent,
    state: document.getElementById("status").dataset.state,
    tokens: window.amygdalaReadout(),
  }));
  seen.views.push(await view());
  const first = await page.$eval("#layer", (select) => select.options[0].textContent.replace("layer ", ""));
  await page.selectOption("#layer", "0");
  await page.waitForFunction((want) => document.getElementById("heat").dataset.layer === want, first);
  seen.views.push(await view());
  await page.uncheck("#zscore");
  await page.waitForFunction(() => document.getElementById("zsource").textContent === "raw values");
  seen.views.push(await view());
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
