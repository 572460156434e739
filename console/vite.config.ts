// The console is served under /console/ by `ferry serve` and `ferry console`, on the API's
// origin, so its API calls are same-origin paths (`/v1/...`).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: false },
});
