#!/usr/bin/env node
'use strict'
// Warden test peer: a headless offline-mode Minecraft Java player built on
// node-minecraft-protocol (nmp) createClient.
//
// Usage:
// A Transfer (Warden's anteroom) is followed like a vanilla client does: reconnect to the named
// host/port with handshake intent 3 and answer Cookie Requests with the cookies stored before.
// Each result line carries "transfers": how many were followed.
//
//   node player.js --port P --version V [--host 127.0.0.1] [--username U] [--server-host NAME]
//                  [--server-port N] [--timeout-ms 15000] [--chat TEXT] [--hold-ms N] [--count N]
//   node player.js --versions V1,V2,...|all (--base-port P | --port P) [same options]
//
//   --host          address to connect to (default 127.0.0.1)
//   --port P        TCP port to connect to (every player, every version)
//   --base-port P   with --versions: version i connects to P+i (the layout of backend.js --base-port)
//   --server-host   hostname written into the handshake (default: --host). This is what Warden routes on.
//                   "{version}" -> 1.20.4 and "{v}" -> 1-20-4 are substituted per player.
//   --server-port   port written into the handshake (default: the port connected to)
//   --version V     Minecraft version, e.g. 1.20.4 (see require('minecraft-protocol').supportedVersions)
//   --versions L    comma list, or "all" (= every nmp version >= 1.8); all players run concurrently
//   --username      player name (default "player"). With more than one player in total the names are
//                   U0..U(n-1), numbered over versions x count (keep U short: names are max 16 chars)
//   --timeout-ms    per-player deadline for reaching success (default 15000)
//   --chat TEXT     after the join-game (login) packet send chat TEXT and wait for a chat/system
//                   message containing "echo:TEXT" (backend.js replies exactly that)
//   --intent 3      send handshake intent 3 (as after a Transfer); with --ticket HEX, present that
//                   warden:ticket cookie when asked
//   --final-line true  with --hold-ms: after the hold print {"ok":true,"phase":"held","transfers":N,"logins":N}
//                   (a warm-swap test sees the player went out and came back without a disconnect)
//   --hold-ms N     after success stay connected N ms; a disconnect during the hold is a failure
//   --count N       N concurrent players per version (default 1)
//   --warmup false  skip compiling the nmp protocol code before connecting (by default it is done
//                   first, so "ms"/--timeout-ms measure the network path, not ~0.2-1.5 s of JIT per version)
//
// Stdout: one JSON object per player (and nothing else):
//   success: {"ok":true,"username":"U","version":"1.20.4","ms":123,"login_ms":100,"echo":"echo:hi"}
//   failure: {"ok":false,"username":"U","version":"1.20.4","ms":..,"phase":"login|chat|hold",
//             "error":"...","kick":"<plain text of the Disconnect reason, or null>",
//             "kick_raw":<raw reason: JSON string, or NBT object on 1.20.3+ play/config>,
//             "kick_state":"login|configuration|play"}   (kick_* only when a Disconnect packet arrived)
//   phase: login = before the Join Game packet, chat = waiting for the echo, hold = after success
// A player that finished its hold prints nothing more. Exit code 0 iff every player succeeded
// (including its hold), 1 otherwise, 2 on bad usage.

const mc = require('minecraft-protocol')
const nbt = require('prismarine-nbt')
const { warmup, versionAtLeast18 } = require('./common')

for (const k of ['log', 'info', 'debug', 'warn']) console[k] = (...a) => console.error(...a)

function emit (obj) {
  process.stdout.write(JSON.stringify(obj, (k, v) => typeof v === 'bigint' ? v.toString() : v) + '\n')
}

function usage (msg) {
  emit({ ok: false, error: 'usage: ' + msg })
  process.exit(2)
}

function parseArgs (argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) usage('unexpected argument ' + a)
    let key = a.slice(2)
    let val
    const eq = key.indexOf('=')
    if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq) } else {
      if (i + 1 >= argv.length) usage('missing value for ' + a)
      val = argv[++i]
    }
    out[key] = val
  }
  return out
}

// Flatten a chat component (JSON string, parsed object, or NBT) into plain text.
function chatToText (reason) {
  if (reason === undefined || reason === null) return null
  let v = reason
  if (typeof v === 'object' && v.type && v.value !== undefined && !Array.isArray(v)) {
    try { v = nbt.simplify(v) } catch (_) {}
  }
  if (typeof v === 'string') {
    try { v = JSON.parse(v) } catch (_) { return v }
  }
  const walk = (c) => {
    if (c === null || c === undefined) return ''
    if (typeof c === 'string' || typeof c === 'number' || typeof c === 'boolean') return String(c)
    if (Array.isArray(c)) return c.map(walk).join('')
    let s = ''
    if (c.text !== undefined) s += String(c.text)
    else if (c[''] !== undefined) s += String(c[''])
    if (c.translate !== undefined) {
      s += c.translate
      if (Array.isArray(c.with) && c.with.length) s += ' ' + c.with.map(walk).join(' ')
    }
    if (Array.isArray(c.extra)) s += c.extra.map(walk).join('')
    return s
  }
  return walk(v)
}

const args = parseArgs(process.argv.slice(2))
const host = args.host || '127.0.0.1'
const versionsArg = args.versions ?? args.version
if (!versionsArg) usage('--version V (or --versions V1,V2,...|all) is required')
const versions = versionsArg === 'all'
  ? mc.supportedVersions.filter(versionAtLeast18)
  : versionsArg.split(',').map(x => x.trim()).filter(Boolean)
for (const v of versions) {
  if (!mc.supportedVersions.includes(v) && !require('minecraft-data')(v)) usage('unsupported version ' + v)
}
const portArg = args['base-port'] ?? args.port
const port = Number(portArg)
if (!Number.isInteger(port) || port <= 0 || port > 65535) usage('--port P (or --base-port P) is required')
// --base-port: version i connects to port P+i (matches backend.js --versions ... --base-port P)
const portFor = (i) => args['base-port'] !== undefined ? port + i : port
// {version} -> "1.20.4", {v} -> "1-20-4" (DNS-label friendly)
const expand = (tmpl, v) => tmpl.replaceAll('{version}', v).replaceAll('{v}', v.replaceAll('.', '-'))
const serverHostTmpl = args['server-host'] ?? host
const serverPortArg = args['server-port'] !== undefined ? Number(args['server-port']) : undefined
const timeoutMs = Number(args['timeout-ms'] ?? 15000)
const chatText = args.chat
const holdMs = Number(args['hold-ms'] ?? 0)
// A player arriving as if transferred: handshake intent 3, presenting this warden:ticket (hex).
const firstIntent = Number(args.intent ?? 2)
// After a successful --hold-ms, print one more line: {"ok":true,"phase":"held","transfers":N,"logins":N}
const finalLine = args['final-line'] !== undefined
const presetTicket = args.ticket !== undefined ? Buffer.from(args.ticket, 'hex') : undefined
const count = Number(args.count ?? 1)
if (!Number.isInteger(count) || count < 1) usage('--count must be >= 1')
const baseName = args.username || 'player'

process.on('uncaughtException', (err) => {
  console.error('[player] uncaught exception:', err && err.stack ? err.stack : err)
})

function runPlayer (username, version, port) {
  const serverHost = expand(serverHostTmpl, version)
  const serverPort = serverPortArg ?? port
  return new Promise((resolve) => {
    const t0 = Date.now()
    let phase = 'login'
    let finished = false // final result decided
    let succeeded = false
    let kickRaw
    let kickState = null
    let lastError = null
    let loginMs = null
    let holdTimer = null

    let client
    // Cookies the server stored (Store Cookie), presented again after a Transfer, the way a
    // vanilla client does. transfers counts how often the player was sent elsewhere.
    const cookies = presetTicket ? { 'warden:ticket': presetTicket } : {}
    let transfers = 0
    let logins = 0
    function open (toPort, hsHost, hsPort, intent) {
      const c = mc.createClient({
        host,
        port: toPort,
        version,
        username,
        auth: 'offline',
        fakeHost: hsHost, // handshake serverHost (nmp setProtocol honours options.fakeHost)
        hideErrors: true,
        keepAlive: true,
        checkTimeoutInterval: Math.max(timeoutMs, holdMs) + 30000
      })
      // Override the handshake's serverPort (serverHost is handled by fakeHost) and, after a
      // Transfer, its intent: nmp always writes 2, a vanilla client writes 3 there.
      const origWrite = c.write.bind(c)
      c.write = (name, params) => {
        if (name === 'set_protocol') params = { ...params, serverHost: hsHost, serverPort: hsPort, nextState: intent }
        return origWrite(name, params)
      }
      c.on('store_cookie', (p) => { cookies[p.key] = Buffer.from(p.value) })
      c.on('cookie_request', (p) => {
        const value = cookies[p.cookie]
        c.write('cookie_response', value ? { key: p.cookie, value } : { key: p.cookie })
      })
      c.once('transfer', (p) => {
        // Follow it: leave this connection quietly and reconnect with intent 3. Like a
        // vanilla client, anything this connection receives afterwards is ignored.
        transfers++
        phase = 'transfer'
        c.removeAllListeners('end')
        try { c.end('transfer') } catch (_) {}
        try {
          client = open(p.port, p.host, p.port, 3)
          attach(client)
        } catch (err) {
          fail('reconnect after transfer: ' + err.message)
        }
      })
      return c
    }
    try {
      client = open(port, serverHost, serverPort, firstIntent)
    } catch (err) {
      emit({ ok: false, username, version, ms: Date.now() - t0, phase, error: 'createClient: ' + err.message, kick: null })
      resolve(false)
      return
    }

    const deadline = setTimeout(() => fail(`timeout after ${timeoutMs} ms waiting in phase ${phase}`), timeoutMs)

    function finish (ok, extra) {
      if (finished) return
      finished = true
      clearTimeout(deadline)
      clearTimeout(holdTimer)
      emit({ ok, username, version, ms: Date.now() - t0, transfers, ...extra })
      try { client.end(ok ? 'done' : 'failed') } catch (_) {}
      // Give the socket a moment to flush/close, but never hang the process.
      setTimeout(() => { try { client.socket && client.socket.destroy() } catch (_) {} }, 200)
      resolve(ok)
    }

    function fail (error) {
      if (finished) return
      const kick = chatToText(kickRaw)
      const extra = { phase, error, kick: kick ?? null }
      if (kickState) extra.kick_state = kickState // protocol state the Disconnect arrived in: login|configuration|play
      if (kickRaw !== undefined) extra.kick_raw = typeof kickRaw === 'string' ? kickRaw : simplifyNbt(kickRaw)
      if (lastError && !String(error).includes(lastError)) extra.last_error = lastError
      if (succeeded) {
        // Success was already printed; the hold broke. Report it as a failure line.
        finished = true
        clearTimeout(deadline)
        clearTimeout(holdTimer)
        emit({ ok: false, username, version, ms: Date.now() - t0, ...extra })
        try { client.end('failed') } catch (_) {}
        resolve(false)
        return
      }
      finish(false, extra)
    }

    function succeed (extra) {
      if (finished || succeeded) return
      succeeded = true
      clearTimeout(deadline)
      emit({ ok: true, username, version, ms: Date.now() - t0, login_ms: loginMs, transfers, ...extra })
      if (holdMs > 0) {
        phase = 'hold'
        holdTimer = setTimeout(() => {
          finished = true
          if (finalLine) emit({ ok: true, username, version, ms: Date.now() - t0, phase: 'held', transfers, logins })
          try { client.end('done') } catch (_) {}
          setTimeout(() => { try { client.socket && client.socket.destroy() } catch (_) {} }, 200)
          resolve(true)
        }, holdMs)
      } else {
        finished = true
        try { client.end('done') } catch (_) {}
        setTimeout(() => { try { client.socket && client.socket.destroy() } catch (_) {} }, 200)
        resolve(true)
      }
    }

    // Login-state and configuration-state Disconnect is 'disconnect'; play-state is 'kick_disconnect'.
    // A real client drops the connection as soon as it reads a Disconnect, so fail right away
    // (do not depend on the peer closing the socket).
    function attach (client) {
    const onKick = (p) => {
      if (kickRaw !== undefined) return
      kickRaw = p.reason
      kickState = client.state
      fail(`kicked: ${chatToText(kickRaw)}`)
    }
    client.on('disconnect', onKick)
    client.on('kick_disconnect', onKick)
    client.on('error', (err) => {
      lastError = err && err.message ? err.message : String(err)
      console.error(`[player ${username}] error:`, lastError)
    })
    client.on('end', (reason) => {
      if (finished) return
      if (kickRaw !== undefined) fail(`kicked: ${chatToText(kickRaw)}`)
      else fail(`connection closed (${reason}${lastError ? '; ' + lastError : ''})`)
    })

    client.once('login', () => {
      logins++
      loginMs = Date.now() - t0
      phase = 'play'
      if (chatText === undefined) {
        succeed({})
        return
      }
      phase = 'chat'
      const want = 'echo:' + chatText
      const onMsg = (formatted) => {
        const text = chatToText(formatted)
        if (text !== null && text.includes(want)) succeed({ echo: text })
      }
      client.on('systemChat', (d) => onMsg(d.formattedMessage))
      client.on('playerChat', (d) => onMsg(d.formattedMessage ?? d.plainMessage))
      // Sending immediately after 'login' is fine for nmp servers; a tiny delay mirrors a real client
      // (which sends settings etc. first) and avoids racing the position packet.
      setTimeout(() => {
        try {
          client.chat(chatText)
        } catch (err) {
          fail('chat send failed: ' + err.message)
        }
      }, 50)
    })
    }
    attach(client)
  })
}

function simplifyNbt (v) {
  try { return safeJson(nbt.simplify(v)) } catch (_) { return safeJson(v) }
}

function safeJson (v) {
  try { return JSON.parse(JSON.stringify(v, (k, x) => typeof x === 'bigint' ? x.toString() : x)) } catch (_) { return String(v) }
}

;(async () => {
  if (args.warmup !== 'false') {
    const ms = warmup([...new Set(versions)], false)
    console.error(`[player] protocol warmup ${ms} ms`)
  }
  const jobs = []
  versions.forEach((v, vi) => {
    for (let c = 0; c < count; c++) {
      const k = jobs.length
      const total = versions.length * count
      jobs.push([total === 1 ? baseName : baseName + k, v, portFor(vi)])
    }
  })
  const results = await Promise.all(jobs.map(([u, v, p]) => runPlayer(u, v, p)))
  const allOk = results.every(Boolean)
  // Let stdout drain and sockets close, then exit explicitly (nmp may keep timers alive).
  setTimeout(() => process.exit(allOk ? 0 : 1), 50)
})()
