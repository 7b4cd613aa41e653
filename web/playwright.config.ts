import { execFileSync } from "node:child_process";
import { defineConfig } from "@playwright/test";

// The port the platform under test listens on; chosen once in the main process, whose
// environment the test workers inherit.
process.env.E2E_PORT ??= String(20_000 + Math.floor(Math.random() * 20_000));

// Debian's Chromium: Playwright never downloads a browser here.
function chromium(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], { encoding: "utf8" }).trim();
}

export default defineConfig({
  testDir: "e2e",
  globalSetup: "./e2e/platform.ts",
  // Training a model on a loaded CPU takes a while.
  timeout: 8 * 60_000,
  expect: { timeout: 30_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: "test-results/artifacts",
  use: {
    baseURL: `http://127.0.0.1:${process.env.E2E_PORT}`,
    viewport: { width: 1280, height: 800 },
    headless: true,
    launchOptions: { executablePath: chromium(), args: ["--no-sandbox", "--disable-dev-shm-usage"] },
    trace: "retain-on-failure",
    actionTimeout: 30_000,
  },
});
