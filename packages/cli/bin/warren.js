#!/usr/bin/env node
// The `warren` bin: present at install time (npm links it then), it runs the compiled CLI, built by the root
// `prepare` script during `npm ci` (or by `npm run build`).
import("../dist/main.js").catch((error) => {
  if (error?.code === "ERR_MODULE_NOT_FOUND" && String(error?.message).includes("dist/main.js")) {
    process.stderr.write("warren: not built yet: run `npm run build` in the repository first\n")
  } else {
    process.stderr.write(`warren: ${error?.stack ?? error}\n`)
  }
  process.exit(1)
})
