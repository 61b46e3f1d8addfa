// Drives amygdala's live page (/ui) in real headless Chromium (Debian's, through playwright-core: no browser is
// downloaded) and prints what it saw as one JSON object; tests/test_serve_ui.py asserts on it.
//
// argv[2]: JSON {chromium, url, key (or null), prompts: [...], maxTokens, screenshot, wrongKey}: each prompt is
// sent in turn (completion mode, greedy) and the page is observed after each answer ends.
// Every request the page makes is recorded; any that leaves the server's origin is aborted and reported.
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const seen = { requests: [], outside: [], pageErrors: [], consoleErrors: [] };

// launch() gives Chromium a fresh temporary profile (its --user-data-dir) and removes it on close.
const browser = await chromium.launch({ executablePath: config.chromium, args: ARGS, headless: true });
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
  await page.route("**/*", (route) => {
    const url = route.request().url();
    seen.requests.push(url);
    if (url.startsWith(config.url + "/")) return route.continue();
    seen.outside.push(url);
    return route.abort();
  });
  page.on("pageerror", (error) => seen.pageErrors.push(error.message));
  page.on("console", (message) => {
    // Chromium logs every failed response (the 401 key page, a 404 manifest, a cut stream) as "Failed to load
    // resource"; those are the scenarios under test. Anything else logged as an error is a defect of the page.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      seen.consoleErrors.push(message.text());
    }
  });

  const first = await page.goto(config.url + "/ui");
  seen.firstStatus = first.status();
  if (config.key !== null) {
    seen.keyPage = await page.isVisible("#key");
    if (config.wrongKey) {
      await page.fill("#key", config.wrongKey);
      await page.click("#open");
      await page.waitForFunction(() => document.getElementById("message").textContent.length > 0);
      seen.wrongKeyMessage = await page.textContent("#message");
    }
    await page.fill("#key", config.key);
    await page.click("#open");
  }
  await page.waitForSelector("#send");
  await page.waitForFunction(() => !/connecting/.test(document.getElementById("info").textContent));
  seen.info = await page.textContent("#info");
  seen.layers = await page.$$eval("#layer option", (options) => options.map((o) => o.textContent));
  seen.selectedLayer = await page.$eval("#layer", (select) => select.selectedOptions[0]?.textContent ?? null);

  const observe = () => page.evaluate(() => {
    const canvas = document.getElementById("heat");
    let painted = 0;
    if (canvas.width && canvas.height) {
      const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted += 1;
    }
    const tokens = [...document.querySelectorAll("#answer .tok")];
    return {
      status: document.getElementById("status").textContent,
      state: document.getElementById("status").dataset.state,
      zsource: document.getElementById("zsource").textContent,
      tokens: tokens.map((t) => t.textContent),
      tinted: tokens.filter((t) => t.style.background !== "").length,
      concepts: tokens.map((t) => t.dataset.concept ?? null),
      heat: { tokens: Number(canvas.dataset.tokens), rows: Number(canvas.dataset.rows), layer: canvas.dataset.layer,
              width: canvas.width, height: canvas.height, painted, image: canvas.toDataURL() },
      heatLabels: [...document.querySelectorAll("#heat-labels span")].map((s) => s.textContent),
      messages: [...document.querySelectorAll("#messages p")].map((p) => p.className + ": " + p.textContent),
    };
  });
  await page.selectOption("#mode", "completion");
  await page.fill("#max-tokens", String(config.maxTokens));
  await page.fill("#temperature", "0");
  seen.answers = [];
  for (const [turn, prompt] of config.prompts.entries()) {
    await page.fill("#prompt", prompt);
    await page.click("#send");
    // This turn is on the page, Send is back, and the status drawn since names how the answer ended.
    await page.waitForFunction((turns) => document.querySelectorAll("#answer > div").length === turns
      && !document.getElementById("send").disabled
      && /^(done|ended|failed|stopped)/.test(document.getElementById("status").dataset.state || ""), turn + 1,
      { timeout: 240000 });
    seen.answers.push(await observe());
  }
  if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });
  if (seen.layers.length > 1) {
    await page.selectOption("#layer", "0");
    const layer = seen.layers[0].replace("layer ", "");
    await page.waitForFunction((want) => document.getElementById("heat").dataset.layer === want, layer);
    seen.firstLayer = await observe();
    await page.uncheck("#zscore");
    await page.waitForFunction(() => document.getElementById("zsource").textContent === "raw values");
    seen.raw = await observe();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
