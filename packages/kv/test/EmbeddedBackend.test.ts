import { EmbeddedBackend } from "@warren/kv"
import { conformance } from "./support/conformance.js"

conformance("EmbeddedBackend (memory only)", (options) => EmbeddedBackend.layer(options))
