// The limit for the PB benchmark: a minimal `net` server with the same framing, answering pings and echoing the
// bench's echo code, replies of one read coalesced into one write. TCP_NODELAY on, like riak_api.
import * as Net from "node:net"
import { childArgs, failChild } from "../lib/child.mjs"
import {
  ECHO_EFFECT_REQ,
  ECHO_EFFECT_RESP,
  ECHO_REQ,
  ECHO_RESP,
  errorFrame,
  frame,
  frameReader,
  PING_REQ,
  PING_RESP
} from "./frames.mjs"
import { serveStats } from "./stats-endpoint.mjs"

const { port = 0 } = childArgs()
const pong = frame(PING_RESP)

try {
  let connections = 0
  const server = Net.createServer({ noDelay: true }, (socket) => {
    connections++
    socket.setNoDelay(true)
    const out = []
    const read = frameReader((code, body) => {
      if (code === PING_REQ) out.push(pong)
      else if (code === ECHO_REQ || code === ECHO_EFFECT_REQ) {
        const header = Buffer.allocUnsafe(5)
        header.writeUInt32BE(1 + body.length, 0)
        header[4] = code === ECHO_REQ ? ECHO_RESP : ECHO_EFFECT_RESP
        out.push(header, body) // a view into the received chunk (Node never reuses them); copied once by concat
      } else out.push(errorFrame(`Unknown message code: ${code}`))
    })
    socket.on("data", (chunk) => {
      if (!read(chunk)) return socket.destroy()
      // one reply: written as is; several (or header + body): copied once into one buffer
      if (out.length === 1) socket.write(out[0])
      else if (out.length > 1) socket.write(Buffer.concat(out))
      out.length = 0
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
