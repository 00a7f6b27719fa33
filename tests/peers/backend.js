#!/usr/bin/env node
'use strict'
// Warden test peer: a Minecraft Java game-server double built on
// node-minecraft-protocol (nmp) createServer. One process can serve many
// protocol versions, one TCP listener per version.
//
// Usage:
//   node backend.js --version 1.20.4 --port 25566
//   node backend.js --versions 1.8.8,1.12.2,1.21.4 --base-port 30000   (version i on port base+i)
//   node backend.js --versions all --base-port 30000                  (every nmp version >= 1.8)
//   node backend.js --versions all --base-port 0                      (ephemeral ports; read them from stdout)
//
// Options:
//   --host ADDR            listen address (default 127.0.0.1)
//   --port P | --base-port P  first port; version i listens on P+i. 0 = kernel-chosen port per version.
//   --version V | --versions V1,V2,...|all
//   --motd TEXT            MOTD; "{version}" and "{port}" are substituted (default "warden-test {version}")
//   --max-players N        (default 100)
//   --favicon              include a tiny 64x64 PNG favicon in status responses
//   --favicon-bytes N      include a favicon data URL of N bytes (an oversized status, e.g. 262144)
//   --echo-protocol        answer each status with the client's protocol number, as multi-version
//                          servers (ViaVersion, proxies) do; default: this server's own protocol
//   --kick TEXT            kick every player with this reason instead of letting them play
//   --warmup false         do not pre-compile the nmp protocol code before listening (default: do it,
//                          so "ready" means the first login is not slowed down by ~0.2-1.5 s per version)
//   --rcon-port P          also serve RCON (list, save-all, stop, transfer, kick; see rcon.js) on P,
//   --rcon-password PW     with this password (required with --rcon-port)
//   --proxy-protocol       expect a PROXY v2 header before each connection (as Warden sends with
//                          proxy_protocol = true) and report its source as `real` on login
//   --kick-stage login|play   login: Login-state Disconnect before Login Success (default);
//                             play: Play-state Disconnect right after join
//
// Stdout: exactly one JSON object per line (nothing else is ever written to stdout):
//   {"event":"listening","version":"1.20.4","protocol":765,"port":30000,"host":"127.0.0.1"}
//   {"event":"ready","servers":[{"version":..,"protocol":..,"port":..},...]}   (after all listeners are up)
//   {"event":"status","version":..,"port":..,"serverHost":..,"serverPort":..,"protocol":<client's>}
//   {"event":"legacy_status","version":..,"port":..}
//   {"event":"login","username":..,"version":..,"port":..,"serverHost":..,"serverPort":..,"protocol":..,"uuid":..}
//   {"event":"join","username":..,"version":..,"port":..}           (play state reached, login+position sent)
//   {"event":"chat","username":..,"version":..,"port":..,"text":..} (echo:<text> is sent back as system chat)
//   {"event":"kick","username":..,"version":..,"port":..,"reason":..,"stage":..}
//   {"event":"version_mismatch","version":..,"port":..,"protocol":<client's>,"serverHost":..}
//        (login attempt with another protocol version; the client gets a login Disconnect
//         "Wrong protocol version, expected: X and you are using: Y")
//   {"event":"disconnect","username":..,"version":..,"port":..,"reason":..}
//   {"event":"rcon","command":..}                                      (an RCON command was run)
//   {"event":"fatal","error":..}  then exit 2 (e.g. EADDRINUSE, unknown version)
// Diagnostics go to stderr. Client errors never crash the process.

const mc = require('minecraft-protocol')
const nbt = require('prismarine-nbt')
const { warmup, versionAtLeast18 } = require('./common')

// nmp and friends sometimes console.log/console.debug; keep stdout pure JSON.
for (const k of ['log', 'info', 'debug', 'warn']) console[k] = (...a) => console.error(...a)

function emit (obj) {
  process.stdout.write(JSON.stringify(obj, (k, v) => typeof v === 'bigint' ? v.toString() : v) + '\n')
}

function fatal (msg) {
  emit({ event: 'fatal', error: String(msg) })
  process.exit(2)
}

function parseArgs (argv) {
  const flags = new Set(['favicon', 'echo-protocol', 'help'])
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) fatal('unexpected argument: ' + a)
    let key = a.slice(2)
    let val
    const eq = key.indexOf('=')
    if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq) } else if (flags.has(key)) val = true
    else {
      if (i + 1 >= argv.length) fatal('missing value for ' + a)
      val = argv[++i]
    }
    out[key] = val
  }
  return out
}

const args = parseArgs(process.argv.slice(2))
if (args.help) {
  process.stderr.write('see header of backend.js for usage\n')
  process.exit(0)
}
const host = args.host || '127.0.0.1'
const basePortRaw = args['base-port'] ?? args.port ?? '25565'
const basePort = Number(basePortRaw)
if (!Number.isInteger(basePort) || basePort < 0 || basePort > 65535) fatal('bad port: ' + basePortRaw)
const versionsArg = args.versions ?? args.version
if (!versionsArg) fatal('--version V or --versions V1,V2,...|all is required')
let versions
if (versionsArg === 'all') versions = mc.supportedVersions.filter(versionAtLeast18)
else versions = versionsArg.split(',').map(s => s.trim()).filter(Boolean)
const motdTemplate = args.motd ?? 'warden-test {version}'
const maxPlayers = Number(args['max-players'] ?? 100)
const kickText = args.kick
const proxyProtocol = args['proxy-protocol'] !== undefined && args['proxy-protocol'] !== 'false'
const kickStage = args['kick-stage'] || 'login'
if (!['login', 'play'].includes(kickStage)) fatal('--kick-stage must be login or play')
// 1x1 transparent PNG is rejected by vanilla clients (must be 64x64), so build a real 64x64 one.
let FAVICON = args.favicon ? 'data:image/png;base64,' + make64PNG().toString('base64') : undefined
if (args['favicon-bytes'] !== undefined) {
  const n = Number(args['favicon-bytes'])
  if (!Number.isInteger(n) || n < 32) fatal('bad --favicon-bytes: ' + args['favicon-bytes'])
  const head = 'data:image/png;base64,'
  FAVICON = head + 'A'.repeat(n - head.length)
}
const echoProtocol = Boolean(args['echo-protocol'])

process.on('uncaughtException', (err) => {
  console.error('[backend] uncaught exception (ignored):', err && err.stack ? err.stack : err)
})
process.on('unhandledRejection', (err) => {
  console.error('[backend] unhandled rejection (ignored):', err && err.stack ? err.stack : err)
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))

function textComponent (mcData, text) {
  return mcData.supportFeature('chatPacketsUseNbtComponents')
    ? nbt.comp({ text: nbt.string(text) })
    : JSON.stringify({ text })
}

function sendSystemChat (client, mcData, text) {
  if (mcData.supportFeature('signedChat')) {
    // 1.19: {content,type}; 1.19.1+: {content,isActionBar}; 1.20.3+: content is NBT
    client.write('system_chat', { content: textComponent(mcData, text), type: 1, isActionBar: false })
  } else {
    // position 1 = system message; sender only exists in 1.16-1.18
    client.write('chat', { message: JSON.stringify({ text }), position: 1, sender: '00000000-0000-0000-0000-000000000000' })
  }
}

function buildLoginPacket (client, mcData, server) {
  // minecraft-data only ships a ready-made loginPacket for 1.16+; older versions are built by hand.
  const legacy = {
    entityId: client.id,
    gameMode: 0,
    dimension: 0,
    difficulty: 2,
    maxPlayers: Math.min(server.maxPlayers, 255),
    levelType: 'default',
    reducedDebugInfo: false,
    hashedSeed: [0, 0],
    viewDistance: 10,
    enableRespawnScreen: true
  }
  return {
    ...legacy,
    ...(mcData.loginPacket || {}),
    enforcesSecureChat: false,
    entityId: client.id,
    isHardcore: false,
    gameMode: 0,
    previousGameMode: 1,
    hashedSeed: [0, 0],
    maxPlayers: mcData.loginPacket ? server.maxPlayers : Math.min(server.maxPlayers, 255),
    viewDistance: 10,
    simulationDistance: 10,
    reducedDebugInfo: false,
    enableRespawnScreen: true,
    doLimitedCrafting: false,
    isDebug: false,
    isFlat: false
  }
}

// Every nmp server of this process, for RCON.
const liveServers = []

function startServer (version, port) {
  return new Promise((resolve) => {
    const mcData = require('minecraft-data')(version)
    if (!mcData) fatal('unsupported version: ' + version)
    const tag = () => ({ version, port: actualPort })
    let actualPort = port
    let server
    try {
      server = mc.createServer({
        host,
        port,
        version,
        'online-mode': false,
        motd: motdTemplate.replaceAll('{version}', version).replaceAll('{port}', String(port)),
        maxPlayers,
        favicon: FAVICON,
        hideErrors: true,
        errorHandler: (client, err) => {
          console.error(`[backend ${version}] client ${client.username || client.id} error:`, err && err.message ? err.message : err)
          try { client.end(String(err && err.message ? err.message : err)) } catch (_) {}
        },
        beforePing: (response, client) => {
          emit({ event: 'status', ...tag(), serverHost: client.serverHost, serverPort: client.serverPort, protocol: client.protocolVersion })
          response.description = { text: server.motd }
          if (echoProtocol) response.version = { ...response.version, protocol: client.protocolVersion }
          return response
        }
      })
    } catch (err) {
      fatal(`createServer(${version}) failed: ${err.message}`)
    }

    if (proxyProtocol) takeProxyHeaders(server.socketServer)

    server.on('error', (err) => {
      if (!server.listeningNow) fatal(`listen ${host}:${port} for ${version} failed: ${err.message}`)
      console.error(`[backend ${version}] server error:`, err)
    })

    server.on('listening', () => {
      liveServers.push(server)
      server.listeningNow = true
      actualPort = server.socketServer.address().port
      server.motd = motdTemplate.replaceAll('{version}', version).replaceAll('{port}', String(actualPort))
      emit({ event: 'listening', version, protocol: mcData.version.version, port: actualPort, host })
      resolve({ version, protocol: mcData.version.version, port: actualPort })
    })

    server.on('connection', (client) => {
      // The legacy (FE 01) ping is answered by nmp itself; just report it.
      client.once('legacy_server_list_ping', () => emit({ event: 'legacy_status', ...tag() }))
      // Login with a different protocol version: behave like vanilla and send a login Disconnect.
      // (nmp's handshake handler calls client.end() while still in HANDSHAKING state, which sends
      // nothing; switching to LOGIN first makes that end() write a Disconnect packet.)
      client.prependOnceListener('set_protocol', (p) => {
        if (p.nextState === 2 && p.protocolVersion !== mcData.version.version) {
          client.kickedByUs = true
          emit({ event: 'version_mismatch', ...tag(), protocol: p.protocolVersion, serverHost: p.serverHost })
          client.removeAllListeners('login_start')
          client.state = mc.states.LOGIN
        }
      })
      if (kickText !== undefined && kickStage === 'login') {
        // Take over nmp's own login_start handler so that nmp never proceeds to Login Success /
        // Set Compression (which would re-pipe the ended serializer and keep the socket open).
        client.removeAllListeners('login_start')
        client.once('login_start', (packet) => {
          client.kickedByUs = true
          emit({ event: 'kick', ...tag(), username: packet.username, reason: kickText, stage: 'login' })
          client.end(kickText) // LOGIN state: nmp writes login Disconnect {"text":kickText} then closes
        })
      }
    })

    server.on('login', (client) => {
      if (client.kickedByUs) return
      emit({
        event: 'login',
        username: client.username,
        ...tag(),
        serverHost: client.serverHost,
        serverPort: client.serverPort,
        protocol: client.protocolVersion,
        uuid: client.uuid,
        real: client.socket && client.socket.realAddress
      })
      client.once('end', (reason) => {
        emit({ event: 'disconnect', username: client.username, ...tag(), reason: typeof reason === 'string' ? reason : String(reason) })
      })
    })

    server.on('playerJoin', (client) => {
      if (client.kickedByUs) return
      try {
        if (kickText !== undefined && kickStage === 'play') {
          client.kickedByUs = true
          emit({ event: 'kick', ...tag(), username: client.username, reason: kickText, stage: 'play' })
          client.end(kickText)
          return
        }
        client.write('login', buildLoginPacket(client, mcData, server))
        client.write('position', {
          x: 0,
          y: 256,
          z: 0,
          dx: 0,
          dy: 0,
          dz: 0,
          yaw: 0,
          pitch: 0,
          flags: 0x00,
          teleportId: 1,
          dismountVehicle: false,
          onGround: false
        })
        emit({ event: 'join', username: client.username, ...tag() })
      } catch (err) {
        console.error(`[backend ${version}] join failed for ${client.username}:`, err)
        try { client.end('backend join error: ' + err.message) } catch (_) {}
        return
      }

      const onChat = (text) => {
        emit({ event: 'chat', username: client.username, ...tag(), text })
        try {
          sendSystemChat(client, mcData, 'echo:' + text)
        } catch (err) {
          console.error(`[backend ${version}] echo failed:`, err)
        }
      }
      client.on('chat', (p) => onChat(p.message)) // < 1.19
      client.on('chat_message', (p) => onChat(p.message)) // >= 1.19
      client.on('chat_command', (p) => onChat('/' + p.command)) // >= 1.19, "/cmd"
      client.on('chat_command_signed', (p) => onChat('/' + p.command)) // >= 1.20.5
    })
  })
}

function make64PNG () {
  // Minimal valid 64x64 RGBA PNG (solid colour), generated without dependencies.
  const zlib = require('zlib')
  const w = 64
  const h = 64
  const raw = Buffer.alloc((w * 4 + 1) * h)
  for (let y = 0; y < h; y++) {
    const row = y * (w * 4 + 1)
    raw[row] = 0
    for (let x = 0; x < w; x++) {
      const o = row + 1 + x * 4
      raw[o] = 0x33; raw[o + 1] = 0x99; raw[o + 2] = 0xff; raw[o + 3] = 0xff
    }
  }
  const crcTable = []
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    crcTable[n] = c >>> 0
  }
  const crc = (buf) => {
    let c = 0xffffffff
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8)
    return (c ^ 0xffffffff) >>> 0
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length)
    const td = Buffer.concat([Buffer.from(type), data])
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td))
    return Buffer.concat([len, td, c])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4)
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0))
  ])
}

;(async () => {
  if (args.warmup !== 'false') {
    const ms = warmup(versions, true)
    console.error(`[backend] protocol warmup ${ms} ms`)
  }
  const servers = []
  // Start sequentially so ports are deterministic and errors are attributable.
  for (let i = 0; i < versions.length; i++) {
    const port = basePort === 0 ? 0 : basePort + i
    if (port > 65535) fatal('port out of range for version ' + versions[i])
    servers.push(await startServer(versions[i], port))
  }
  if (args['rcon-port'] !== undefined) {
    if (!args['rcon-password']) fatal('--rcon-port needs --rcon-password')
    require('./rcon').serve(host, Number(args['rcon-port']), args['rcon-password'], liveServers, emit)
  }
  emit({ event: 'ready', servers })
})()

// Reads the PROXY v2 header Warden puts first, records its source address on the socket
// (`realAddress`, "ip:port") and hands the rest to nmp as if the header was never there.
function takeProxyHeaders (socketServer) {
  const nmpListeners = socketServer.listeners('connection')
  socketServer.removeAllListeners('connection')
  const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
  socketServer.on('connection', (socket) => {
    let buf = Buffer.alloc(0)
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk])
      if (buf.length < 16) return
      if (!buf.subarray(0, 12).equals(SIG)) {
        emit({ event: 'proxy_header_missing' })
        socket.destroy()
        return
      }
      const len = buf.readUInt16BE(14)
      if (buf.length < 16 + len) return
      socket.removeListener('data', onData)
      socket.pause()
      const fam = buf[13]
      if (fam === 0x11 && len >= 12) {
        const a = buf.subarray(16, 20).join('.')
        socket.realAddress = a + ':' + buf.readUInt16BE(24)
      } else if (fam === 0x21 && len >= 36) {
        const parts = []
        for (let i = 0; i < 8; i++) parts.push(buf.readUInt16BE(16 + 2 * i).toString(16))
        socket.realAddress = '[' + parts.join(':') + ']:' + buf.readUInt16BE(48)
      }
      const rest = buf.subarray(16 + len)
      if (rest.length > 0) socket.unshift(rest)
      for (const l of nmpListeners) l.call(socketServer, socket)
      socket.resume()
    }
    socket.on('data', onData)
  })
}
