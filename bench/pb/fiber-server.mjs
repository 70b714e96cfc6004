// A reference for the PB benchmark: the raw server's framing and replies, served the way the issue asks warren to
// serve, as cheaply as warren's process core can make it: a fiber per connection on warren's eager scheduler, that
// waits in a bare `Async` step (`Suspend`), is woken by the socket's `data` event with an `Exit`, and runs the
// effectful echo's `Effect.sync` in its own run loop. Nothing else of warren's: no registry, no services, no
// metrics, no budget, no Scope, no supervisor. What it costs over the raw server is what that shape costs on
// Effect 3.22; warren's server costs that plus its own work.
import * as Net from "node:net"
import { childArgs, failChild } from "../lib/child.mjs"
import { answer, ECHO_EFFECT_REQ, frameReader, writeAnswers } from "./frames.mjs"
import { serveStats } from "./stats-endpoint.mjs"

const { port = 0 } = childArgs()
try {
  const { Effect } = await import("effect")
  const { EagerScheduler, Suspend } = await import("@warren/process")
  const scheduler = EagerScheduler.make({ nestUnderFibers: true })
  const woken = Effect.void

  /** One connection's fiber: serves what the socket delivered, writes the replies of one wake-up at once, waits. */
  const serve = (socket) => {
    let pending = []
    let next = 0
    let open = true
    let waiter
    const out = []
    const read = frameReader((code, body) => pending.push(code, body))
    const wake = () => {
      const resume = waiter
      if (resume !== undefined) {
        waiter = undefined
        resume(woken)
      }
    }
    socket.on("data", (chunk) => {
      if (!read(chunk)) return socket.destroy()
      wake()
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      open = false
      wake()
    })
    const wait = Suspend.make((resume) => {
      if (next < pending.length || !open) resume(woken)
      else waiter = resume
    })
    let effectBody
    // The loop's body: frames answered synchronously in place; the effectful echo's Effect returned, to run next.
    const body = () => {
      while (next < pending.length) {
        const code = pending[next]
        const payload = pending[next + 1]
        next += 2
        if (code === ECHO_EFFECT_REQ) {
          effectBody = payload
          return Effect.sync(() => payload)
        }
        answer(code, payload, out)
      }
      pending = []
      next = 0
      writeAnswers(socket, out)
      return wait
    }
    const step = (value) => {
      if (effectBody !== undefined && value === effectBody) {
        effectBody = undefined
        answer(ECHO_EFFECT_REQ, value, out)
      }
    }
    Effect.runFork(
      Effect.withScheduler(Effect.whileLoop({ while: () => open, body, step }), scheduler)
    )
  }

  let connections = 0
  const server = Net.createServer({ noDelay: true }, (socket) => {
    connections++
    socket.setNoDelay(true)
    socket.on("close", () => connections--)
    serve(socket)
  })
  server.listen(port, "127.0.0.1", () => {
    serveStats(() => ({ connections }), async () => server.close())
    process.send({ type: "ready", port: server.address().port })
  })
} catch (error) {
  failChild(error)
}
