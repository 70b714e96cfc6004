// What a PB server process under test answers its parent: CPU time and memory (after a full GC when asked and when
// node runs with --expose-gc), and a clean stop.

/** Serves `stats` and `stop` requests from the parent over IPC. */
export const serveStats = (extra, close) => {
  process.on("message", async (msg) => {
    if (msg.type === "stats") {
      if (msg.gc && typeof globalThis.gc === "function") {
        globalThis.gc()
        await new Promise((resolve) => setImmediate(resolve))
        globalThis.gc()
      }
      const memory = process.memoryUsage()
      process.send({
        type: "stats",
        cpu: process.cpuUsage(),
        rss: memory.rss,
        heapUsed: memory.heapUsed,
        external: memory.external,
        ...extra()
      })
    } else if (msg.type === "stop") {
      const timer = setTimeout(() => process.exit(0), 3000)
      try {
        await close()
      } finally {
        clearTimeout(timer)
        process.exit(0)
      }
    }
  })
}
