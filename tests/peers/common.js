'use strict'
// Shared helpers for the node test peers (backend.js, player.js).

const { createSerializer, createDeserializer } = require('minecraft-protocol/src/transforms/serializer')

const STATES = ['handshaking', 'status', 'login', 'configuration', 'play']

// nmp compiles a protocol (de)serializer per (state, direction, version) on first use and caches it
// per process. For recent versions that is ~0.3-1.5 s of CPU, which would otherwise land inside the
// first connection's timing/timeout. Warm the cache up front. Returns elapsed ms.
function warmup (versions, isServer) {
  const t0 = Date.now()
  for (const version of versions) {
    for (const state of STATES) {
      try {
        createSerializer({ state, isServer, version })
        createDeserializer({ state, isServer, version })
      } catch (_) {
        // state does not exist in this version (e.g. configuration before 1.20.2)
      }
    }
  }
  return Date.now() - t0
}

function versionAtLeast18 (v) {
  const [maj, min] = v.split('.').map(Number)
  return maj > 1 || (maj === 1 && min >= 8)
}

module.exports = { warmup, versionAtLeast18 }
