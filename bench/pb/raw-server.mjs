// The limit for the PB benchmark: a minimal `net` server with the same framing, answering pings and echoing the
// bench's echo code, replies of one read coalesced into one write. TCP_NODELAY on, like riak_api.
import * as Net from "node:net"
import { childArgs, failChild } from "../lib/child.mjs"
import { answer, frameReader, writeAnswers } from "./frames.mjs"
import { serveStats } from "./stats-endpoint.mjs"

const { port = 0 } = childArgs()

try {
  let connections = 0
  const server = Net.createServer({ noDelay: true }, (socket) => {
    connections++
    socket.setNoDelay(true)
    const out = []
    const read = frameReader((code, body) => answer(code, body, out))
    socket.on("data", (chunk) => {
      if (!read(chunk)) return socket.destroy()
      writeAnswers(socket, out)
    })
    socket.on("error", () => {})
    socket.on("close", () => connections--)
  })
  server.listen(port, "127.0.0.1", () => {
    serveStats(() => ({ connections }), async () => server.close())
    process.send({ type: "ready", port: server.address().port })
  })
} catch (error) {
  failChild(error)
}
