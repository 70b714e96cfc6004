#!/usr/bin/env node
/**
 * The `warren` command.
 *
 *   warren rpc call --url URL --exchange NAME [--exchange-type direct] --routing-key KEY [--timeout MS] PAYLOAD
 *   warren pb serve [--host 127.0.0.1] [--port 8087]
 */
import { runPbServe } from "./commands/pbServe.js"
import { runRpcCall } from "./commands/rpcCall.js"

const usage = `usage:
  warren rpc call --url URL --exchange NAME [--exchange-type direct] --routing-key KEY [--timeout MS] PAYLOAD
  warren pb serve [--host 127.0.0.1] [--port 8087]`

const [group, command, ...rest] = process.argv.slice(2)
if (group === "rpc" && command === "call") {
  runRpcCall(rest)
} else if (group === "pb" && command === "serve") {
  runPbServe(rest)
} else {
  process.stderr.write(`${usage}\n`)
  process.exitCode = group === "--help" || group === "-h" ? 0 : 2
}
