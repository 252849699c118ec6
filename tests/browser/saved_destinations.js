// Drives the dashboard's sign-in and saved-destination editor in Debian's
// Chromium (headless, through playwright-core), on a phone-sized viewport and
// with the keyboard, and prints what it saw as one JSON line for
// tests/dashboard_saved.rs. Screenshots go to the directory given.
//
//   node saved_destinations.js BASE_URL TOKEN OUT_DIR
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [, , base, token, out] = process.argv;
const seen = { steps: [], errors: [] };
const step = s => seen.steps.push(s);

// Tab until `selector` has the focus, noting every stop; fails after `max`.
async function tabTo(page, selector, max = 40) {
  const stops = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const at = await page.evaluate(sel => {
      const el = document.activeElement;
      const name = (el.labels && el.labels[0] && el.labels[0].textContent.trim())
        || el.getAttribute('aria-label') || el.textContent.trim() || el.getAttribute('placeholder') || '';
      return { match: el.matches(sel), tag: el.tagName.toLowerCase(), name,
        outline: getComputedStyle(el).outlineStyle };
    }, selector);
    stops.push(at);
    if (at.match) return stops;
  }
  throw new Error(`${selector} not reached with Tab: ${JSON.stringify(stops)}`);
}

async function layout(page, width) {
  return page.evaluate(w => {
    const bad = [];
    for (const el of document.querySelectorAll('#saved button, #saved input, #saved select, header button, header input')) {
      const r = el.getBoundingClientRect();
      if (!r.width) continue; // hidden
      if (r.right > w + 0.5 || r.left < -0.5) bad.push(`${el.tagName} ${el.id || el.textContent.trim()} at ${r.left}-${r.right}`);
    }
    const small = [...document.querySelectorAll('#saved button')].filter(b => {
      const r = b.getBoundingClientRect(); return r.width && r.height < 32;
    }).map(b => b.textContent.trim());
    const unnamed = [...document.querySelectorAll('#saved input, #saved select, #saved button')].filter(el => {
      const r = el.getBoundingClientRect(); if (!r.width) return false;
      return !((el.labels && el.labels.length && el.labels[0].textContent.trim()) || el.getAttribute('aria-label') || el.textContent.trim());
    }).map(el => el.outerHTML.slice(0, 80));
    return { scrollWidth: document.documentElement.scrollWidth, outside: bad, small, unnamed };
  }, width);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, hasTouch: true, isMobile: true });
    const page = await context.newPage();
    page.on('pageerror', e => seen.errors.push(String(e)));
    page.on('dialog', d => d.accept());
    await page.goto(base + '/');
    await page.waitForSelector('#conn:not(.off)');
    // Reads are open on this prism: before signing in, every live stream shows.
    await page.waitForFunction(() => document.querySelectorAll('.stream').length === 2, null, { timeout: 10000 });
    seen.streamsBefore = await page.$$eval('.stream h2', hs => hs.map(h => h.textContent).sort());

    // Sign in with the keyboard: the header's Sign in, its token field, Enter.
    await tabTo(page, '#ctlsum');
    await page.keyboard.press('Enter');
    await tabTo(page, '#token');
    await page.keyboard.type(token);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#saved:not([hidden]) li[data-id="youtube"]');
    seen.signedInAs = (await page.textContent('#ctlsum')).trim();
    // Before signing in the page showed every stream (reads are open here); once
    // the poll after sign-in has answered, only hers.
    await page.waitForFunction(() => document.querySelectorAll('.stream').length === 1, null, { timeout: 10000 });
    seen.streams = await page.$$eval('.stream h2', hs => hs.map(h => h.textContent));
    step('signed in');
    await page.screenshot({ path: path.join(out, 'signed-in-390.png'), fullPage: true });
    seen.layoutSignedIn = await layout(page, 390);

    // Add with the keyboard: Tab to the platform field, type, Tab, type, Enter.
    seen.addStops = await tabTo(page, '#sa-preset', 80);
    await page.keyboard.type('twitch');
    await page.keyboard.press('Tab');
    await page.keyboard.type('dash-twitch-key-1');
    await page.keyboard.press('Enter');
    await page.waitForSelector('li[data-id="twitch"]');
    seen.focusAfterAdd = await page.evaluate(() => document.activeElement.id);
    step('added twitch');

    // Switch it off: Tab to its switch, Space.
    await tabTo(page, 'li[data-id="twitch"] input[role="switch"]', 80);
    await page.keyboard.press('Space');
    await page.waitForSelector('li[data-id="twitch"].off');
    step('switched twitch off');

    // Edit it: Tab to its Edit button, Enter opens the form on the key field;
    // a new profile, then Tab to Save and Enter.
    await tabTo(page, 'li[data-id="twitch"] .acts button:first-child', 80);
    await page.keyboard.press('Enter');
    seen.editFocus = await page.evaluate(() => document.activeElement.type);
    await page.keyboard.press('Tab');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    seen.profilePicked = await page.$eval('li[data-id="twitch"] form select', s => s.value);
    await tabTo(page, 'li[data-id="twitch"] form button[type="submit"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('li[data-id="twitch"] .tag >> text=re-encode');
    seen.twitchTags = await page.$$eval('li[data-id="twitch"] .tag', t => t.map(x => x.textContent));
    step('edited twitch');

    // Remove youtube: Tab to its Remove button, Enter, the confirmation accepted.
    await tabTo(page, 'li[data-id="youtube"] button.danger', 80);
    await page.keyboard.press('Enter');
    await page.waitForSelector('li[data-id="youtube"]', { state: 'detached' });
    step('removed youtube');
    seen.ids = await page.$$eval('#saved-list li', ls => ls.map(l => l.dataset.id));
    await page.screenshot({ path: path.join(out, 'edited-390.png'), fullPage: true });
    seen.layoutEdited = await layout(page, 390);

    // The same page on a desktop.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: path.join(out, 'edited-1280.png'), fullPage: true });
    seen.toasts = await page.$$eval('#toasts .toast span', t => t.map(x => x.textContent));
    seen.html = await page.content();
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
})().catch(e => {
  console.log(JSON.stringify(Object.assign(seen, { failed: String(e && e.stack || e) })));
  process.exit(1);
});
