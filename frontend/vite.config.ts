import { defineConfig } from "vite";

// The build goes into the Python package, which serves it (git-ignored there).
export default defineConfig({
  base: "./",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "../src/labtrack/_server/static",
    emptyOutDir: true,
    target: "es2020",
    chunkSizeWarningLimit: 600,
    rollupOptions: {
      output: {
        entryFileNames: "assets/[name]-[hash].js",
        chunkFileNames: "assets/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  server: {
    // `npm run dev` against a running `labtrack ui --port 8765`.
    proxy: { "/api": "http://127.0.0.1:8765" },
  },
});
