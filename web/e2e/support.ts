import { expect, type Page } from "@playwright/test";
import { ADMIN } from "./platform";

export const SCREENSHOTS = "test-results/screenshots";
const VIEWPORTS = [
  { name: "desktop", width: 1280, height: 800 },
  { name: "phone", width: 390, height: 844 },
];

// A screenshot of the page as it is now, at a laptop's and at a phone's width.
export async function shoot(page: Page, name: string): Promise<void> {
  for (const viewport of VIEWPORTS) {
    await page.setViewportSize({ width: viewport.width, height: viewport.height });
    await page.waitForTimeout(150); // charts redraw at the new width
    await page.screenshot({ path: `${SCREENSHOTS}/${name}-${viewport.name}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

// Console errors and uncaught exceptions of the page, for the test to assert there were none.
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(`uncaught: ${error.message}`));
  // The console names no URL for a failed request; this does.
  page.on("response", (response) => {
    if (response.status() >= 400) errors.push(`${response.status()} ${response.request().method()} ${response.url()}`);
  });
  return errors;
}

export async function logIn(page: Page): Promise<void> {
  await page.goto("/login");
  await page.getByLabel("Username").fill(ADMIN.username);
  await page.getByLabel("Password").fill(ADMIN.password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByRole("heading", { name: "Dashboard" })).toBeVisible();
}

// Sentences from a small grammar: a tiny model learns them in one quick epoch.
export function corpus(lines = 400): string {
  const subjects = ["the cat", "a dog", "the bird", "my friend"];
  const verbs = ["sees", "likes", "follows", "finds"];
  const objects = ["the ball", "a tree", "the river", "some bread"];
  const out: string[] = [];
  for (let i = 0; i < lines; i += 1) {
    out.push(`${subjects[i % 4]} ${verbs[(i >> 2) % 4]} ${objects[(i >> 4) % 4]}.`);
  }
  return `${out.join("\n")}\n`;
}
