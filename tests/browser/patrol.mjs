// The patrol-desk page in a real browser: Debian's headless Chromium, driven
// by playwright-core. Against a running `minewatch demo`, it signs in as a
// county regulator, waits for an evacuation of one of that county's mines to
// appear on the page without reloading, acknowledges it, checks that no mine
// of another county is anywhere on the page, checks that the feed fits a
// 1600 px wide screen without scrolling sideways, opens a mine's trend
// chart, and saves screenshots of the board and the chart. Then it signs in
// as the province desk and checks that it sees tasks without the buttons
// the API would refuse it.
//
//   node patrol.mjs BASE_URL USER PASSWORD COUNTY SCREENSHOT_DIR
//
// Exits non-zero with a message when a step fails.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, user, password, county, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node patrol.mjs BASE_URL USER PASSWORD COUNTY SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-zygote"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 }, locale: "zh-CN" });
  page.on("pageerror", (e) => { console.error("page error:", e.message); failed = true; });

  // Sign in.
  await page.goto(`${base}/`);
  await page.waitForURL(/\/login/, { timeout: 10_000 });
  await page.fill("input[name=name]", user);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/login"), { timeout: 10_000 }), page.click("button[type=submit]")]);
  await page.waitForSelector("#who:not(:empty)", { timeout: 10_000 });
  console.log("signed in as", await page.textContent("#who"));

  // An evacuation of this county's mine arrives over SSE, without a reload.
  const navigations = [];
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });
  const row = page.locator("tr.evacuation.active").first();
  await row.waitFor({ timeout: 120_000 });
  if (navigations.length) throw new Error(`the page reloaded: ${navigations.join(", ")}`);
  const mineLink = await row.locator("a[data-mine]").getAttribute("data-mine");
  console.log("evacuation at mine", mineLink);
  if (!mineLink.startsWith(county)) throw new Error(`evacuation of ${mineLink}, not of county ${county}`);

  // Acknowledge it inline.
  const id = await row.getAttribute("data-alert");
  await row.locator("button[data-act=ack]").click();
  await page.waitForFunction((id) => {
    const r = document.querySelector(`tr[data-alert="${id}"]`);
    return r && !r.querySelector("button[data-act=ack]");
  }, id, { timeout: 10_000 });
  console.log("acknowledged", id);

  // No mine of another county anywhere on the page.
  const codes = await page.$$eval("[data-mine]", (els) => els.map((e) => e.getAttribute("data-mine")));
  const foreign = codes.filter((c) => !c.startsWith(county));
  if (!codes.length) throw new Error("no mine on the board");
  if (foreign.length) throw new Error(`mines of other counties shown: ${foreign.join(", ")}`);
  const text = await page.textContent("body");
  for (const other of ["140121", "140181", "140429", "140521"].filter((c) => c !== county)) {
    if (text.includes(other)) throw new Error(`county ${other} appears on the page`);
  }

  // The feed fits a 1600 px screen: no sideways scrolling.
  await page.setViewportSize({ width: 1600, height: 900 });
  await page.waitForTimeout(300);
  const [scroll, client] = await page.$eval("#feed", (s) => [s.scrollWidth, s.clientWidth]);
  if (scroll > client + 1) throw new Error(`the feed scrolls sideways at 1600 px (${scroll} > ${client})`);
  await page.setViewportSize({ width: 1920, height: 1080 });

  // The board, then a mine's trend chart with its alarm lines.
  await page.screenshot({ path: `${shots}/board.png` });
  await page.click(`#board .mine[data-mine="${mineLink}"]`);
  await page.waitForFunction(() => document.querySelectorAll("#points tr.point").length > 0, null, { timeout: 15_000 });
  await page.waitForTimeout(500);
  await page.locator("#detail").screenshot({ path: `${shots}/trend.png` });
  console.log("screenshots in", shots);

  // The province desk sees every task, with no button to take or close it.
  const desk = await browser.newPage({ viewport: { width: 1920, height: 1080 }, locale: "zh-CN" });
  desk.on("pageerror", (e) => { console.error("page error (desk):", e.message); failed = true; });
  await desk.goto(`${base}/`);
  await desk.waitForURL(/\/login/, { timeout: 10_000 });
  await desk.fill("input[name=name]", "desk");
  await desk.fill("input[name=password]", password);
  await Promise.all([desk.waitForURL((u) => !u.pathname.startsWith("/login"), { timeout: 10_000 }), desk.click("button[type=submit]")]);
  await desk.locator("#task-list .task").first().waitFor({ timeout: 60_000 });
  const buttons = await desk.locator("#task-list [data-take], #task-list form[data-close]").count();
  if (buttons) throw new Error(`the desk sees ${buttons} task action(s) the API refuses it`);
  console.log("the desk sees tasks without actions");
} catch (e) {
  console.error("FAILED:", e.message);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
