// Opens a `tributary bench compare` report in headless Chromium (playwright-core driving the
// system's /usr/bin/chromium) and checks what a reader relies on: the page loads with no console
// error and no page error, the summary table has exactly one row per expected run (by its
// driver label, in order), and every chart is a rendered SVG with one line per run. Saves a
// full-page PNG screenshot, also when a check fails, so the artifact shows what was wrong.
//
// Usage: node report.test.mjs <report.html> <screenshot.png> <run label>...
// Exits 0 when every check passed, 1 otherwise (each check prints ok/FAIL).

import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const [report, screenshot, ...expected] = process.argv.slice(2);
if (!report || !screenshot || expected.length === 0) {
  console.error("usage: node report.test.mjs <report.html> <screenshot.png> <run label>...");
  process.exit(2);
}

let failed = 0;
async function check(name, body) {
  try {
    await body();
    console.log(`ok   ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}: ${error.message || error}`);
  }
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const problems = [];
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console: ${message.text()}`);
});
page.on("pageerror", (error) => problems.push(`page error: ${error}`));
// The report is self-contained: any request beyond the file itself is a defect.
page.on("request", (request) => {
  if (!request.url().startsWith("file:")) problems.push(`external request: ${request.url()}`);
});

await check("the report loads", async () => {
  const response = await page.goto(pathToFileURL(report).href, { waitUntil: "load" });
  if (response && !response.ok()) throw new Error(`status ${response.status()}`);
});

await check("the summary table has one row per run, in order", async () => {
  const rows = await page.locator("table tr:has(td)").evaluateAll((trs) =>
    trs.map((tr) => tr.querySelector("td").textContent.trim()));
  if (JSON.stringify(rows) !== JSON.stringify(expected)) {
    throw new Error(`rows ${JSON.stringify(rows)}, expected ${JSON.stringify(expected)}`);
  }
  // Every figure cell of a row is filled (a number, a ratio or the "–" of a missing base).
  const empty = await page.locator("table td").evaluateAll((tds) =>
    tds.filter((td) => td.textContent.trim() === "").length);
  if (empty) throw new Error(`${empty} empty table cell(s)`);
});

await check("every chart is a rendered SVG with one line per run", async () => {
  const charts = await page.locator("figure svg").evaluateAll((svgs) =>
    svgs.map((svg) => {
      const box = svg.getBoundingClientRect();
      return {
        title: (svg.querySelector("text")?.textContent || "").trim(),
        width: box.width,
        height: box.height,
        lines: svg.querySelectorAll("polyline").length,
        // A line with points: a chart of an empty series draws nothing a reader can use.
        drawn: [...svg.querySelectorAll("polyline")].filter((l) => l.points.numberOfItems > 0).length,
      };
    }));
  if (charts.length !== 6) throw new Error(`${charts.length} charts, expected 6`);
  for (const chart of charts) {
    if (chart.width < 100 || chart.height < 100) {
      throw new Error(`chart "${chart.title}" is ${chart.width}x${chart.height} px`);
    }
    if (chart.lines !== expected.length || chart.drawn !== expected.length) {
      throw new Error(`chart "${chart.title}": ${chart.drawn} drawn of ${chart.lines} lines, expected ${expected.length}`);
    }
  }
});

await page.screenshot({ path: screenshot, fullPage: true });
console.log(`screenshot: ${screenshot}`);

await check("no console error, page error or external request", async () => {
  if (problems.length) throw new Error(problems.join("; "));
});

await browser.close();
process.exit(failed ? 1 : 0);
