// Opens the dashboard in Debian's Chromium (headless, through playwright-core),
// starts the first stream's live preview (hls.js in low-latency mode, served by
// prism), samples how far behind prism's receipt the picture plays, stops the
// preview, and prints what it saw as one JSON line for tests/hls_browser.rs.
//
//   node hls_preview.js BASE_URL SECONDS OUT_DIR [switch]
//
// With `switch`, it then makes hls.js play every variant of the master
// playlist in turn and notes each one that played (a second of progress).
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [, , base, seconds, out, mode] = process.argv;
const seen = { errors: [], samples: [], failed: [] };

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', e => seen.errors.push(String(e)));
    page.on('console', m => { if (m.type() === 'error') seen.errors.push(m.text()); });
    page.on('response', r => { if (r.status() >= 400) seen.failed.push(r.status() + ' ' + r.url()); });
    await page.goto(base + '/');
    const button = page.getByRole('button', { name: 'Preview' }).first();
    await button.click();
    await page.waitForFunction(() => {
      const v = document.querySelector('.preview video');
      return v && v.hls && v.currentTime > 0.5 && !v.paused;
    }, null, { timeout: 30000 });
    seen.playing = true;
    for (let i = 0; i < Number(seconds) * 2; i++) {
      await page.waitForTimeout(500);
      seen.samples.push(await page.evaluate(() => {
        const v = document.querySelector('.preview video');
        const hls = v.hls;
        return {
          latencyMs: hls.playingDate ? Date.now() - hls.playingDate.getTime() : null,
          hlsLatency: hls.latency,
          currentTime: v.currentTime,
          paused: v.paused,
          lowLatencyMode: hls.lowLatencyMode,
          shown: v.closest('.preview').textContent,
        };
      }));
    }
    if (mode === 'switch') {
      seen.levels = await page.evaluate(() => document.querySelector('.preview video').hls.levels.length);
      seen.switched = [];
      for (let level = 0; level < seen.levels; level++) {
        await page.evaluate(l => {
          const v = document.querySelector('.preview video');
          v.hls.currentLevel = l; v.dataset.from = String(v.currentTime);
        }, level);
        await page.waitForFunction(l => {
          const v = document.querySelector('.preview video');
          return v.hls.currentLevel === l && v.currentTime > Number(v.dataset.from) + 1 && !v.paused;
        }, level, { timeout: 30000 });
        seen.switched.push(level);
      }
    }
    // The stream's card says its HLS is being watched.
    await page.waitForFunction(() => [...document.querySelectorAll('.pill')]
      .some(p => !p.hidden && p.textContent.startsWith('HLS')), null, { timeout: 10000 });
    seen.hlsPill = await page.evaluate(() => [...document.querySelectorAll('.pill')]
      .find(p => !p.hidden && p.textContent.startsWith('HLS')).textContent);
    seen.requests = await page.evaluate(() => performance.getEntriesByType('resource')
      .map(e => e.name).filter(n => n.includes('/hls/') || n.includes('/assets/')));
    await page.screenshot({ path: path.join(out, 'preview.png') });
    await page.getByRole('button', { name: 'Stop preview' }).first().click();
    seen.videosAfterStop = await page.locator('video').count();
  } catch (e) {
    seen.errors.push('script: ' + (e && e.stack || e));
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
  process.exit(seen.errors.length ? 1 : 0);
})();
