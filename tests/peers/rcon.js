'use strict'
// Warden test peer: the RCON commands a warm-swap restart needs, served for backend.js
// (Source RCON framing: int32le length, int32le id, int32le type, body, two NULs).
//
//   list                          "There are N of a max of M players online: a, b"
//   save-all                      "Saved the game"
//   stop                          "Stopping the server", then every player is disconnected and the
//                                 process exits
//   transfer <host> <port> <name> sends the player a play-state Transfer (1.20.5+ clients)
//   kick <name> [reason]          disconnects the player
// Each served command is also reported to `report({event:'rcon', command})`.

const net = require('net')

const AUTH = 3
const EXEC = 2
const RESPONSE = 0
const MAX_BODY = 1446

function packet (id, type, body) {
  const b = Buffer.from(body, 'utf8')
  const out = Buffer.alloc(14 + b.length)
  out.writeInt32LE(10 + b.length, 0)
  out.writeInt32LE(id, 4)
  out.writeInt32LE(type, 8)
  b.copy(out, 12)
  return out
}

function players (servers) {
  const all = []
  for (const s of servers) for (const c of Object.values(s.clients)) if (c.state === 'play') all.push(c)
  return all
}

function run (servers, line, report) {
  const [cmd, ...rest] = line.trim().split(/\s+/)
  report({ event: 'rcon', command: line.trim() })
  switch (cmd) {
    case 'list': {
      const names = players(servers).map((c) => c.username)
      return `There are ${names.length} of a max of 100 players online: ${names.join(', ')}`
    }
    case 'save-all':
      return 'Saved the game'
    case 'stop':
      setTimeout(() => {
        for (const c of players(servers)) { try { c.end('Server closed') } catch (_) {} }
        setTimeout(() => process.exit(0), 200)
      }, 50)
      return 'Stopping the server'
    case 'transfer': {
      const [host, port, name] = rest
      const c = players(servers).find((p) => p.username === name)
      if (!c) return `No player was found`
      try {
        c.write('transfer', { host, port: Number(port) })
      } catch (err) {
        return `Could not transfer ${name}: ${err.message}`
      }
      return `Transferring ${name} to ${host}:${port}`
    }
    case 'kick': {
      const [name, ...why] = rest
      const c = players(servers).find((p) => p.username === name)
      if (!c) return `No player was found`
      c.end(why.join(' ') || 'Kicked by an operator')
      return `Kicked ${name}`
    }
    default:
      return `Unknown command: ${cmd}`
  }
}

function serve (host, port, password, servers, report) {
  const srv = net.createServer((sock) => {
    let buf = Buffer.alloc(0)
    let authed = false
    sock.on('error', () => {})
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length >= 4) {
        const len = buf.readInt32LE(0)
        if (len < 10 || len > MAX_BODY + 10) { sock.destroy(); return }
        if (buf.length < 4 + len) return
        const id = buf.readInt32LE(4)
        const type = buf.readInt32LE(8)
        const body = buf.subarray(12, 4 + len - 2).toString('utf8')
        buf = buf.subarray(4 + len)
        if (type === AUTH) {
          authed = body === password
          sock.write(packet(authed ? id : -1, EXEC, ''))
        } else if (type === EXEC && authed) {
          sock.write(packet(id, RESPONSE, run(servers, body, report)))
        } else {
          sock.destroy()
          return
        }
      }
    })
  })
  srv.listen(port, host)
  return srv
}

module.exports = { serve }
