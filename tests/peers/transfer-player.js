#!/usr/bin/env node
'use strict'
// Warden test peer: an offline-mode nmp player that joins, waits in the anteroom (configuration
// state) and reports the Transfer it is given. It does not follow the Transfer.
//
// Usage:
//   node transfer-player.js HOST PORT VERSION NAME [TIMEOUT_SECONDS=30] [INTENT=2]
//
//   INTENT 3 rewrites the handshake's nextState to 3 (a client arriving from a Transfer);
//   nmp itself always sends 2.
//
// Stdout: exactly one JSON line.
//   {"event":"transfer","host":H,"port":P,"cookie":"<hex of the warden:ticket cookie or null>",
//    "cookies":{key:hex,...},"keepalives":N,"dialogs":[<simplified NBT of each show_dialog>]}  exit 0
//   {"event":"kicked","reason":<simplified reason>,"state":"login|configuration|play",...}     exit 3
//   {"event":"end","reason":...}      connection closed without Transfer or Disconnect         exit 4
//   {"event":"error","message":...}   nmp error (e.g. a packet it could not parse)             exit 5
//   {"event":"timeout"}               nothing decisive within TIMEOUT_SECONDS                  exit 124
// nmp answers keep-alives itself in every state (src/client/keepalive.js listens to the
// 'keep_alive' packet whatever the state), including configuration.

const mc = require('minecraft-protocol')
const nbt = require('prismarine-nbt')
const { warmup } = require('./common')

for (const k of ['log', 'info', 'debug', 'warn']) console[k] = (...a) => console.error(...a)

const [host, portArg, version, name, timeoutArg, intentArg] = process.argv.slice(2)
if (!host || !portArg || !version || !name) {
  process.stdout.write(JSON.stringify({ event: 'error', message: 'usage: HOST PORT VERSION NAME [TIMEOUT] [INTENT]' }) + '\n')
  process.exit(2)
}
const timeoutMs = Number(timeoutArg || 30) * 1000
const intent = Number(intentArg || 2)

let done = false
function finish (obj, code) {
  if (done) return
  done = true
  const line = JSON.stringify(obj, (k, v) => typeof v === 'bigint' ? v.toString() : v) + '\n'
  process.stdout.write(line, () => process.exit(code))
}

function simplify (reason) {
  if (reason && typeof reason === 'object' && reason.type) {
    try { return nbt.simplify(reason) } catch (_) { return reason }
  }
  if (typeof reason === 'string') {
    try { return JSON.parse(reason) } catch (_) { return reason }
  }
  return reason
}

// Compile nmp's protocol code first so the JIT does not eat into the server's timeouts.
warmup([version], false)

const client = mc.createClient({
  host,
  port: Number(portArg),
  version,
  username: name,
  auth: 'offline',
  hideErrors: true
})

if (intent !== 2) {
  const write = client.write.bind(client)
  client.write = (packetName, params) =>
    write(packetName, packetName === 'set_protocol' ? { ...params, nextState: intent } : params)
}

const cookies = {}
const dialogs = []
let keepalives = 0

client.on('keep_alive', () => { keepalives++ })
client.on('store_cookie', (p) => { cookies[p.key] = Buffer.from(p.value).toString('hex') })
client.on('show_dialog', (p) => { dialogs.push(simplify(p.dialog)) })
client.on('transfer', (p) => {
  finish({
    event: 'transfer',
    host: p.host,
    port: p.port,
    cookie: cookies['warden:ticket'] ?? null,
    cookies,
    keepalives,
    dialogs
  }, 0)
})
for (const ev of ['disconnect', 'kick_disconnect']) {
  client.on(ev, (p) => {
    finish({ event: 'kicked', reason: simplify(p.reason), state: client.state, keepalives, dialogs }, 3)
  })
}
client.on('error', (err) => finish({ event: 'error', message: String(err && err.message), state: client.state }, 5))
client.on('end', (reason) => finish({ event: 'end', reason: String(reason), state: client.state }, 4))

setTimeout(() => finish({ event: 'timeout', state: client.state, keepalives }, 124), timeoutMs)
