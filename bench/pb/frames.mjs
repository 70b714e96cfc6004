// Riak PB framing for the bench: 4-byte big-endian length (code byte + body), 1 code byte, body.

export const PING_REQ = 1
export const PING_RESP = 2
/** Spare codes the bench uses for its 1 KiB echo service (unused by Riak). */
export const ECHO_REQ = 200
export const ECHO_RESP = 201
// the same echo from a service whose `process` returns an Effect (the path of KV and other effectful services)
export const ECHO_EFFECT_REQ = 202
export const ECHO_EFFECT_RESP = 203

/** One frame. */
export const frame = (code, body = Buffer.alloc(0)) => {
  const out = Buffer.allocUnsafe(5 + body.length)
  out.writeUInt32BE(1 + body.length, 0)
  out[4] = code
  body.copy(out, 5)
  return out
}

/** An RpbErrorResp (errmsg = 1 bytes, errcode = 2 uint32 = 0) for `text`. */
export const errorFrame = (text) => {
  const msg = Buffer.from(text, "utf8")
  const varint = []
  let n = msg.length
  while (n > 0x7f) {
    varint.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  varint.push(n)
  return frame(0, Buffer.concat([Buffer.from([0x0a, ...varint]), msg, Buffer.from([0x10, 0x00])]))
}

/**
 * Splits a byte stream into frames: `push(chunk)` calls `onFrame(code, body)` for each complete frame (body is a view,
 * valid during the call) and keeps any partial frame for the next chunk. Returns false on a zero-length frame.
 */
export const frameReader = (onFrame) => {
  let pending = null
  return (chunk) => {
    let buf = pending === null ? chunk : Buffer.concat([pending, chunk])
    let off = 0
    const end = buf.length
    while (end - off >= 4) {
      const len = buf.readUInt32BE(off)
      if (len === 0) return false
      if (end - off - 4 < len) break
      onFrame(buf[off + 4], buf.subarray(off + 5, off + 4 + len))
      off += 4 + len
    }
    pending = off === end ? null : buf.subarray(off)
    return true
  }
}

const pong = frame(PING_RESP)

/**
 * The reference servers' answer to one request (raw-server.mjs, fiber-server.mjs): ping, the two echoes (a header
 * and a view of the request's body), or riak's error for an unknown code; pushed onto `out`.
 */
export const answer = (code, body, out) => {
  if (code === PING_REQ) out.push(pong)
  else if (code === ECHO_REQ || code === ECHO_EFFECT_REQ) {
    const header = Buffer.allocUnsafe(5)
    header.writeUInt32BE(1 + body.length, 0)
    header[4] = code === ECHO_REQ ? ECHO_RESP : ECHO_EFFECT_RESP
    out.push(header, body) // a view into the received chunk (Node never reuses them); copied once by concat
  } else out.push(errorFrame(`Unknown message code: ${code}`))
}

/** Writes the answers in `out` with one write (one buffer as is, several copied once into one) and empties it. */
export const writeAnswers = (socket, out) => {
  if (out.length === 1) socket.write(out[0])
  else if (out.length > 1) socket.write(Buffer.concat(out))
  out.length = 0
}
