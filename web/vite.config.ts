import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The bundle is built into the Python package, which serves it at `/`.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../src/aiplatform/web_static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:8000" },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    testTimeout: 30_000,
  },
});
