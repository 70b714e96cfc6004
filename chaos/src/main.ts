/**
 * `npm run chaos [-- --only rpc,pb,kv] [--bounded]`: runs each fault for real, on loopback, against a private
 * RabbitMQ node and `warren pb serve` processes it starts itself, and prints one table (Markdown) of what was done,
 * the figures, and any promise that did not hold. Exits 1 if one did not.
 */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import { startBroker } from "./Broker.js"
import { fullKvScale, runKvFaults } from "./KvFaults.js"
import { boundedPbScale, fullPbScale, runPbFaults } from "./PbFaults.js"
import { type Row, table } from "./Report.js"
import { boundedRpcScale, fullRpcScale, runRpcFaults } from "./RpcFaults.js"

const args = process.argv.slice(2)
const onlyAt = args.indexOf("--only")
const only = onlyAt >= 0 ? (args[onlyAt + 1] ?? "").split(",") : ["rpc", "pb", "kv"]
const bounded = args.includes("--bounded")
const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)

const main = async () => {
  const started = Date.now()
  const rows: Array<Row> = []
  if (only.includes("rpc")) {
    const broker = await startBroker()
    log(`rabbitmq node up at ${broker.url}`)
    try {
      // The library's logs (connection lost, reconnected) go to stderr with the progress lines; stdout has the table.
      rows.push(
        ...await Effect.runPromise(
          runRpcFaults(broker, bounded ? boundedRpcScale : fullRpcScale, log).pipe(
            Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)))
          )
        )
      )
    } finally {
      await broker.stop()
    }
  }
  if (only.includes("pb")) rows.push(...await runPbFaults(bounded ? boundedPbScale : fullPbScale, log))
  if (only.includes("kv")) rows.push(...await runKvFaults(fullKvScale, log))
  const failed = rows.filter((row) => row.problems.length > 0).length
  process.stdout.write(`\n${table(rows)}\n\n`)
  process.stdout.write(
    `${rows.length} rows, ${failed} failed, ${((Date.now() - started) / 1000).toFixed(0)} s ` +
      `(node ${process.version}, ${new Date().toISOString()})\n`
  )
  process.exitCode = failed > 0 ? 1 : 0
}

main().catch((error: unknown) => {
  process.stderr.write(`chaos: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 2
})
