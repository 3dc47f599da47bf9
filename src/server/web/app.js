// The chat page: protocol v2 over WebSocket, one JSON message per text
// frame (see protocol.md). Every string from the server or a user reaches
// the page through textContent or createTextNode, never as markup, so a
// message can show `<script>` but never run it. A module: strict, deferred,
// and nothing of it in the global scope.
const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), me: $('me'), rooms: $('rooms'), members: $('members'),
  topic: $('topic'), roomName: $('room-name'), log: $('log'), composer: $('composer'),
  send: $('send'), login: $('login'), loginForm: $('login-form'),
  account: $('login-account'), password: $('login-password'), loginError: $('login-error'),
  loginOpen: $('login-open'), joinForm: $('join-form'), joinRoom: $('join-room'),
  roomsToggle: $('rooms-toggle'), membersToggle: $('members-toggle'), jump: $('jump'),
};

/** Builds an element whose text, if any, is set as text. */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}
// The server folds names fully (Unicode); lower case is close enough to
// key what it already sent folded and to compare nicks for display.
const fold = (s) => String(s).toLowerCase();
const isGuest = (nick) => /^guest\d+$/i.test(nick);
const store = {
  get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch (e) { /* private mode */ } },
};

let ws = null;
let myId = 0;
let myNick = '';
let defaultRoom = 'lobby';
let wanted = store.get('chat.nick'); // the nick to take back on (re)connect
let account = null; // the account logged in to, and its password, kept in
let password = null; // memory only, to log in again after a reconnection
let auth = null; // a login or register under way from the dialog
let quitting = false;
let connectedOnce = false;
let attempt = 0;
let retryTimer = 0;
let pingSent = 0;
let pendingSwitch = null; // a room typed in /join: show it when joined
let loginRequired = false;
let reclaim = 0; // tries left to take back our nick from a ghost of ourselves
const rooms = new Map(); // key (folded room, or "@" + folded nick) -> room
let current = null;

// ---- rooms and conversations ----

function makeRoom(key, peer) {
  const r = {
    key, peer, box: el('div', 'room-log'), top: el('div', 'more'), members: new Map(),
    topic: '', unread: 0, seen: new Set(), oldest: 0, newest: 0, more: false,
    loading: false, asks: [], own: [], joined: false, stick: true, scroll: 0,
    li: el('li', 'room'), unreadEl: el('span', 'unread', ''),
  };
  r.box.append(r.top);
  r.li.dataset.room = key;
  r.li.tabIndex = 0;
  r.li.append(el('span', 'name', peer ? '@' + peer : key), r.unreadEl);
  r.li.addEventListener('click', () => switchTo(r));
  r.li.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); switchTo(r); }
  });
  rooms.set(key, r);
  // Rooms first, then private conversations, each alphabetically.
  const order = (x) => (x.peer ? '1' : '0') + x.key;
  const next = [...rooms.values()].filter((x) => x !== r && order(x) > order(r))
    .sort((a, b) => (order(a) < order(b) ? -1 : 1))[0];
  ui.rooms.insertBefore(r.li, next ? next.li : null);
  return r;
}
const roomOf = (name) => rooms.get(fold(name));
function peerRoom(nick) {
  return rooms.get('@' + fold(nick)) || makeRoom('@' + fold(nick), nick);
}

function dropRoom(r) {
  rooms.delete(r.key);
  r.li.remove();
  if (current === r) {
    current = null;
    const next = [...ui.rooms.children].map((li) => rooms.get(li.dataset.room)).find(Boolean);
    if (next) switchTo(next); else showNothing();
  }
  updateTitle();
}

function showNothing() {
  ui.log.replaceChildren();
  ui.members.replaceChildren();
  ui.topic.textContent = '';
  ui.roomName.textContent = 'chat';
}

function switchTo(r) {
  if (current && current !== r) {
    current.stick = atBottom();
    current.scroll = ui.log.scrollTop;
    current.li.removeAttribute('aria-current');
  }
  current = r;
  r.li.setAttribute('aria-current', 'true');
  r.unread = 0;
  showUnread(r);
  ui.log.replaceChildren(r.box);
  ui.log.scrollTop = r.stick ? ui.log.scrollHeight : r.scroll;
  ui.jump.hidden = true;
  ui.roomName.textContent = r.peer ? '@' + r.peer : '#' + r.key;
  showTopic();
  showMembers();
  panels(null);
  maybeLoadOlder();
}

function cycle(step) {
  const list = [...ui.rooms.children].map((li) => rooms.get(li.dataset.room)).filter(Boolean);
  if (!list.length) return;
  const i = list.indexOf(current);
  const r = list[(i + step + list.length) % list.length];
  const onList = document.activeElement && document.activeElement.classList.contains('room');
  switchTo(r);
  if (onList) r.li.focus(); // else the composer keeps the focus, to type on
}

function showUnread(r) {
  r.unreadEl.textContent = r.unread ? String(r.unread) : '';
  r.unreadEl.setAttribute('aria-label', r.unread ? r.unread + ' unread' : '');
  updateTitle();
}
function updateTitle() {
  let n = 0;
  for (const r of rooms.values()) n += r.unread;
  document.title = n ? '(' + n + ') chat' : 'chat';
}

function showTopic() {
  ui.topic.textContent = current && !current.peer ? current.topic : '';
  ui.topic.title = ui.topic.textContent;
}

function showMembers() {
  const r = current;
  const nicks = !r ? [] : r.peer ? [r.peer, myNick] : [...r.members.values()];
  nicks.sort((a, b) => fold(a).localeCompare(fold(b)));
  ui.members.replaceChildren(...nicks.map((nick) => {
    const li = el('li', 'member ' + colour(nick), nick);
    li.dataset.nick = nick;
    li.tabIndex = 0;
    li.title = 'Talk privately with ' + nick;
    return li;
  }));
}
function openPeer(nick) {
  if (nick && fold(nick) !== fold(myNick)) {
    switchTo(peerRoom(nick));
    ui.composer.focus();
  }
}

// ---- lines in the log ----

/** One of twelve colours, the same for a nick everywhere. */
function colour(nick) {
  let h = 2166136261;
  for (const c of fold(nick)) h = Math.imul(h ^ c.codePointAt(0), 16777619);
  return 'n' + ((h >>> 0) % 12);
}
const pad = (n) => String(n).padStart(2, '0');
function timeEl(ts) {
  const d = new Date(Number.isFinite(ts) ? ts : Date.now());
  const t = el('time', 'time', pad(d.getHours()) + ':' + pad(d.getMinutes()));
  t.title = d.toLocaleString();
  t.dateTime = d.toISOString();
  return t;
}
function line(kind, from, text, ts, action) {
  const d = el('div', 'msg ' + kind);
  d.append(timeEl(ts));
  if (from !== null) {
    d.append(el('span', 'from ' + colour(from), from));
    if (fold(from) === fold(myNick)) d.classList.add('own');
  }
  if (action) d.classList.add('action');
  d.append(el('span', 'text', text));
  return d;
}

const atBottom = () => ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
/** Adds to a room's log, following the end if the reader was there. */
function put(r, node, before) {
  const follow = r === current && atBottom();
  r.box.insertBefore(node, before || null);
  if (follow) ui.log.scrollTop = ui.log.scrollHeight;
  else if (r === current && !before) ui.jump.hidden = false;
}
function toEnd() {
  ui.log.scrollTop = ui.log.scrollHeight;
  ui.jump.hidden = true;
}
function sys(r, text, error) {
  const target = r || current;
  const d = line('system' + (error ? ' error' : ''), null, text);
  if (target) put(target, d); else ui.log.append(d);
}
function notify(r) {
  if (r !== current) { r.unread += 1; showUnread(r); }
}

/** A stored group message, live or from history, shown once by its seq. */
function addGroup(r, h, live) {
  const seq = Number(h.seq) || 0;
  if (seq && r.seen.has(seq)) return false;
  if (seq) {
    // Our own line, shown when sent (the sender gets no copy), now
    // coming back in a catch-up: it gets its seq and is not shown twice.
    const i = r.own.findIndex((o) => fold(o.from) === fold(h.from) && o.text === h.text);
    if (i >= 0 && !live) {
      r.own.splice(i, 1)[0].el.dataset.seq = String(seq);
      remember(r, seq);
      return false;
    }
  }
  const d = line('group', String(h.from), String(h.text), h.ts, h.action === true);
  if (seq) d.dataset.seq = String(seq);
  let before = null;
  if (seq && seq < r.newest) {
    for (const c of r.box.querySelectorAll('.msg[data-seq]')) {
      if (Number(c.dataset.seq) > seq) { before = c; break; }
    }
  }
  put(r, d, before);
  if (seq) remember(r, seq);
  return true;
}
function remember(r, seq) {
  r.seen.add(seq);
  if (seq > r.newest) r.newest = seq;
  if (!r.oldest || seq < r.oldest) r.oldest = seq;
}

// ---- history ----

function ask(r, kind, extra) {
  const q = Object.assign({ type: 'history', room: r.key, limit: 50 }, extra);
  if (send(q)) r.asks.push(kind); else r.loading = false;
}
function loadOlder(r, n, typed) {
  if (!r || r.peer || r.loading) return;
  if (!r.more || !r.oldest) {
    if (typed) sys(r, 'No older messages in #' + r.key + '.');
    return;
  }
  r.loading = true;
  r.top.textContent = 'Loading older messages…';
  ask(r, 'older', { before: r.oldest, limit: n });
}
/** A log too short to scroll could never ask for more: ask now. */
function maybeLoadOlder() {
  if (current && ui.log.scrollHeight <= ui.log.clientHeight + 40) loadOlder(current, 50);
}
function showTop(r) {
  r.top.textContent = r.more ? 'Scroll up for older messages' : r.oldest ? 'Start of #' + r.key : '';
}

function onHistory(m) {
  const r = roomOf(m.room);
  if (!r) return;
  const kind = r.asks.shift() || 'last';
  const list = Array.isArray(m.messages) ? m.messages : [];
  if (kind === 'older') {
    r.loading = false;
    r.more = m.more === true;
    const frag = document.createDocumentFragment();
    for (const h of list) {
      const seq = Number(h.seq) || 0;
      if (!seq || r.seen.has(seq)) continue;
      const d = line('group', String(h.from), String(h.text), h.ts, h.action === true);
      d.dataset.seq = String(seq);
      frag.append(d);
      remember(r, seq);
    }
    // Keep what the reader looks at where it is: same distance from the end.
    const fromEnd = ui.log.scrollHeight - ui.log.scrollTop;
    r.top.after(frag);
    if (r === current) ui.log.scrollTop = ui.log.scrollHeight - fromEnd;
    showTop(r);
    maybeLoadOlder();
    return;
  }
  let added = 0;
  for (const h of list) if (addGroup(r, h, false)) added += 1;
  if (kind === 'last') {
    r.more = m.more === true;
    showTop(r);
    if (r === current) ui.log.scrollTop = ui.log.scrollHeight;
    maybeLoadOlder();
  } else {
    r.missed = (r.missed || 0) + added;
    if (m.more === true && list.length) {
      ask(r, 'after', { after: r.newest, limit: 500 });
    } else {
      if (r.missed) sys(r, r.missed + ' message' + (r.missed > 1 ? 's' : '') + ' while you were away.');
      r.missed = 0;
    }
    if (r !== current && added) { r.unread += added; showUnread(r); }
  }
}

// ---- the connection ----

/**
 * The status is a live region: screen readers read out its changes. The
 * reconnect countdown sits in a part hidden from them, so that they hear
 * "Reconnecting" once, not a number every second.
 */
function setStatus(state, text, aside) {
  ui.status.dataset.state = state;
  if (ui.status.dataset.text !== text) {
    ui.status.dataset.text = text;
    ui.status.textContent = text;
  }
  let hidden = ui.status.querySelector('span');
  if (aside && !hidden) {
    hidden = el('span');
    hidden.setAttribute('aria-hidden', 'true');
    ui.status.append(hidden);
  }
  if (hidden) hidden.textContent = aside || '';
}

function send(obj) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(obj));
  return true;
}
function sendOr(obj) {
  if (send(obj)) return true;
  sys(null, 'Not connected: nothing was sent (the text stays in the box); try again when the status says Connected.', true);
  return false;
}

function connect() {
  clearTimeout(retryTimer);
  setStatus('connecting', connectedOnce ? 'Reconnecting…' : 'Connecting…');
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  let sock;
  try { sock = new WebSocket(url); } catch (e) { ws = null; lost(); return; }
  ws = sock;
  pingSent = 0;
  sock.onmessage = (ev) => {
    if (sock !== ws) return;
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (m && typeof m === 'object' && typeof m.type === 'string') handle(m);
  };
  sock.onclose = () => { if (sock === ws) { ws = null; lost(); } };
}

function lost() {
  for (const r of rooms.values()) { r.asks = []; r.loading = false; }
  if (auth) { ui.loginError.textContent = 'The connection was lost; try again when connected.'; auth = null; }
  if (quitting) {
    setStatus('closed', 'Disconnected (/quit). Reload the page to come back.');
    return;
  }
  // Back off, with jitter so that a restarted server is not hit by
  // every page at the same instant.
  const delay = Math.round(Math.min(15, 2 ** attempt) * (0.75 + Math.random() / 2) * 1000);
  attempt += 1;
  const at = Date.now() + delay;
  const tick = () => {
    const left = Math.ceil((at - Date.now()) / 1000);
    if (left <= 0) { connect(); return; }
    setStatus('closed', 'Disconnected; reconnecting', ' in ' + left + ' s…');
    retryTimer = setTimeout(tick, Math.min(1000, at - Date.now()));
  };
  tick();
}
function reconnectNow() {
  if (!ws && !quitting) { attempt = 0; connect(); }
}

/** A silent network (no close seen) is found by a ping left unanswered. */
setInterval(() => {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (pingSent && Date.now() - pingSent > 20000) {
    const dead = ws;
    ws = null;
    dead.close();
    lost();
    return;
  }
  if (!pingSent) { pingSent = Date.now(); send({ type: 'ping', token: 'alive' }); }
}, 25000);

function welcome(m) {
  myId = m.id;
  setMe(String(m.nick));
  if (typeof m.room === 'string') defaultRoom = fold(m.room);
  attempt = 0;
  setStatus('open', 'Connected');
  const again = connectedOnce;
  connectedOnce = true;
  loginRequired = m.login === 'required';
  if (account && password) {
    send({ type: 'login', account, password });
  } else if (wanted && fold(wanted) !== fold(myNick)) {
    reclaim = 5;
    send({ type: 'nick', nick: wanted });
  }
  if (loginRequired) {
    // Rooms wait for `logged_in`: before it every join is refused.
    if (!(account && password)) {
      sys(null, 'This server asks you to log in first.');
      openLogin(wanted || '');
    }
    return;
  }
  joinAll(again);
}
/** Into the default room on first contact; back into every room after. */
function joinAll(again) {
  const mine = [...rooms.values()].filter((r) => !r.peer);
  if (!again || !mine.length) {
    if (!rooms.has(defaultRoom)) pendingSwitch = pendingSwitch || defaultRoom;
    send({ type: 'join', room: defaultRoom });
    return;
  }
  for (const r of mine) send({ type: 'join', room: r.key });
  if (!loginRequired && !rooms.has(defaultRoom)) send({ type: 'part', room: defaultRoom });
}

function setMe(nick) {
  myNick = nick;
  ui.me.textContent = nick;
  if (!isGuest(nick)) { wanted = nick; store.set('chat.nick', nick); }
  if (current && current.peer) showMembers();
}

const AUTH_ERRORS = new Set(['login_failed', 'too_many_attempts', 'insecure_transport',
  'bad_password', 'nick_registered', 'nick_in_use', 'bad_nick', 'registration_closed',
  'bad_message']);

function handle(m) {
  const str = (v) => (typeof v === 'string' ? v : '');
  switch (m.type) {
    case 'welcome': welcome(m); break;
    case 'joined': {
      const key = fold(m.room);
      const r = rooms.get(key) || makeRoom(key, null);
      r.joined = true;
      r.topic = str(m.topic);
      r.members = new Map((Array.isArray(m.users) ? m.users : []).map((u) => [u.id, String(u.nick)]));
      if (r.newest) ask(r, 'after', { after: r.newest, limit: 500 });
      else if (!r.asks.length) ask(r, 'last', {});
      if (pendingSwitch === key || !current) { pendingSwitch = null; switchTo(r); }
      else if (r === current) { showTopic(); showMembers(); }
      break;
    }
    case 'parted': {
      const r = roomOf(m.room);
      if (r) { dropRoom(r); sys(null, 'You left #' + r.key + '.'); }
      break;
    }
    case 'join': {
      const r = m.room ? roomOf(m.room) : rooms.get(defaultRoom);
      if (!r) break;
      r.members.set(m.id, String(m.nick));
      sys(r, '→ ' + m.nick + ' joined #' + r.key);
      if (r === current) showMembers();
      break;
    }
    case 'leave': {
      const why = str(m.text) ? ': ' + m.text : '';
      const reason = { part: 'left', quit: 'quit', disconnect: 'disconnected', slow: 'was dropped (too slow)' }[m.reason] || 'left';
      const where = m.room ? [roomOf(m.room)].filter(Boolean) : [...rooms.values()];
      for (const r of where) {
        if (r.peer) {
          if (!m.room && fold(r.peer) === fold(m.nick)) sys(r, '← ' + m.nick + ' ' + reason + why);
          continue;
        }
        if (!r.members.delete(m.id)) continue;
        sys(r, '← ' + m.nick + ' ' + reason + (m.room ? ' #' + r.key : '') + why);
        if (r === current) showMembers();
      }
      break;
    }
    case 'nick': {
      for (const r of rooms.values()) {
        if (r.peer) {
          if (fold(r.peer) === fold(m.old) && m.id !== myId) sys(r, m.old + ' is now known as ' + m.new);
          continue;
        }
        if (!r.members.has(m.id)) continue;
        r.members.set(m.id, String(m.new));
        sys(r, m.old + ' is now known as ' + m.new);
      }
      if (m.id === myId) {
        reclaim = 0;
        setMe(String(m.new));
        if (auth && auth.kind === 'register' && auth.waitNick && fold(m.new) === fold(auth.account)) {
          auth.waitNick = false;
          send({ type: 'register', password: auth.password });
        }
      }
      showMembers();
      break;
    }
    case 'group': {
      const r = roomOf(m.room || defaultRoom);
      if (r && addGroup(r, m, true)) notify(r);
      break;
    }
    case 'private': {
      const peer = fold(m.from) === fold(myNick) ? str(m.to) || myNick : String(m.from);
      const r = peerRoom(peer);
      put(r, line('private', String(m.from), String(m.text), m.ts, m.action === true));
      notify(r);
      break;
    }
    case 'topic': {
      const r = roomOf(m.room);
      if (!r) break;
      r.topic = str(m.text);
      sys(r, r.topic ? m.by + ' set the topic: ' + r.topic : m.by + ' cleared the topic');
      if (r === current) showTopic();
      break;
    }
    case 'rooms': {
      const list = Array.isArray(m.rooms) ? m.rooms : [];
      sys(null, list.length ? 'Rooms:\n' + list.map((x) => '#' + x.name + ' (' + x.users + ')'
        + (x.topic ? ' ' + x.topic : '')).join('\n') : 'No rooms.');
      break;
    }
    case 'who': {
      const names = (Array.isArray(m.users) ? m.users : []).map((u) => String(u.nick));
      sys(null, (m.room ? 'In #' + m.room : 'Online') + ' (' + names.length + '): ' + names.join(', '));
      break;
    }
    case 'history': onHistory(m); break;
    case 'pong': pingSent = 0; break;
    case 'bye':
      if (m.reason === 'shutdown') sys(null, 'The server is stopping; reconnecting when it is back.');
      break;
    case 'registered':
    case 'logged_in': {
      account = str(m.account) || (auth && auth.account);
      if (auth) password = auth.password;
      auth = null;
      ui.loginOpen.textContent = 'Account';
      sys(null, m.type === 'registered' ? 'Registered ' + account + ': it is yours now.' : 'Logged in as ' + account + '.');
      if (ui.login.open) ui.login.close();
      if (loginRequired && m.type === 'logged_in') joinAll([...rooms.values()].some((r) => !r.peer));
      break;
    }
    case 'logged_out':
      account = null;
      password = null;
      ui.loginOpen.textContent = 'Log in';
      sys(null, 'Logged out; you keep your nickname until you change it.');
      break;
    case 'error': onError(m); break;
    default: break; // newer servers may say more: ignore what we do not know
  }
}

function onError(m) {
  const code = String(m.code || 'error');
  const text = String(m.message || m.text || code);
  if (auth && AUTH_ERRORS.has(code)) {
    ui.loginError.textContent = text;
    auth = null;
    return;
  }
  if (code === 'nick_in_use' && reclaim > 0 && wanted) {
    // Our old connection may not be gone from the server yet: it will
    // be soon, so ask again rather than stay a guest.
    reclaim -= 1;
    const sock = ws;
    setTimeout(() => {
      if (ws === sock && wanted && fold(wanted) !== fold(myNick)) send({ type: 'nick', nick: wanted });
    }, 3000);
    if (reclaim < 4) return;
  }
  if (code === 'login_required') openLogin(wanted || '');
  if (code === 'login_failed' && account) { account = null; password = null; }
  sys(null, 'Error (' + code + '): ' + text, true);
}

// ---- what the user types ----

const HELP = [
  'TEXT  say TEXT in the current room (or to the person, in a private conversation)',
  '/msg NICK TEXT  say TEXT to NICK only (also /m)',
  '/me TEXT  say what you do: /me waves shows * NICK waves',
  '/join ROOM  join ROOM (made if new) and talk there; in it already: talk there',
  '/part [ROOM] [TEXT]  leave ROOM (the current room by default), saying TEXT',
  '/rooms  list the rooms',
  '/topic [TEXT]  show the current room\'s topic, or set it (/topic - clears it)',
  '/history [N]  show N older messages of the current room (20 by default; scrolling up does it too)',
  '/who [ROOM]  list who is in the current room, or in ROOM',
  '/nick NAME  take a new nickname',
  '/login ACCOUNT  log in to ACCOUNT (the password is asked for in a dialog); take its name',
  '/register  make your current nickname an account, yours (password asked in a dialog)',
  '/logout  stop owning the nickname (you keep it until you change it)',
  '/quit [REASON]  leave (reload the page to come back)',
  '/help  this list',
  '//TEXT  say /TEXT',
  'Keys: Enter sends, Shift+Enter starts a new line, Alt+Up and Alt+Down switch rooms, Escape comes back to the message box',
];

function say(text, action) {
  const r = current;
  if (!r) { sys(null, 'You are in no room: /join ROOM first.', true); return true; }
  if (r.peer) {
    const msg = { type: 'private', to: r.peer, text };
    if (action) msg.action = true;
    if (!sendOr(msg)) return false;
    if (fold(r.peer) !== fold(myNick)) put(r, line('private', myNick, text, Date.now(), action));
    return true;
  }
  const msg = { type: 'group', room: r.key, text };
  if (action) msg.action = true;
  if (!sendOr(msg)) return false;
  const d = line('group', myNick, text, Date.now(), action);
  r.own.push({ from: myNick, text, el: d });
  if (r.own.length > 200) r.own.shift();
  put(r, d);
  toEnd();
  return true;
}

function usage(text) { sys(null, 'usage: ' + text, true); return true; }

function command(input) {
  if (input.startsWith('//')) return say(input.slice(1));
  const parts = /^\/(\S*)\s*([\s\S]*)$/.exec(input) || ['', '', ''];
  const name = parts[1].toLowerCase();
  const args = parts[2].trim();
  const oneWord = args !== '' && !/\s/.test(args);
  switch (name) {
    case 'msg': case 'm': {
      const mm = /^(\S+)\s+([\s\S]*\S[\s\S]*)$/.exec(args);
      if (!mm) return usage('/' + name + ' NICK TEXT');
      const [, to, text] = mm;
      if (!sendOr({ type: 'private', to, text })) return false;
      const r = peerRoom(to);
      if (fold(to) !== fold(myNick)) put(r, line('private', myNick, text, Date.now()));
      switchTo(r);
      return true;
    }
    case 'me': return args ? say(args, true) : usage('/me TEXT');
    case 'join': {
      if (!oneWord) return usage('/join ROOM');
      const room = args.replace(/^#/, '');
      const r = roomOf(room);
      if (r && r.joined) { switchTo(r); return true; }
      pendingSwitch = fold(room);
      return sendOr({ type: 'join', room });
    }
    case 'part': {
      let room = current && !current.peer ? current.key : null;
      let reason = args;
      const first = args.split(/\s+/)[0];
      const named = first && roomOf(first.replace(/^#/, ''));
      if (named && !named.peer) { room = named.key; reason = args.slice(first.length).trim(); }
      if (!room && current && current.peer) { dropRoom(current); return true; }
      if (!room) return usage('/part [ROOM] [TEXT]');
      const msg = { type: 'part', room };
      if (reason) msg.text = reason;
      return sendOr(msg);
    }
    case 'nick': return oneWord ? sendOr({ type: 'nick', nick: args }) : usage('/nick NAME');
    case 'topic': {
      if (!current || current.peer) return usage('/topic [TEXT] (in a room)');
      if (!args) {
        sys(current, current.topic ? 'Topic of #' + current.key + ': ' + current.topic : 'No topic in #' + current.key + '.');
        return true;
      }
      return sendOr({ type: 'topic', room: current.key, text: args === '-' ? '' : args });
    }
    case 'who': {
      if (/\s/.test(args)) return usage('/who [ROOM]');
      const room = args.replace(/^#/, '') || (current && !current.peer ? current.key : '');
      return sendOr(room ? { type: 'who', room } : { type: 'who' });
    }
    case 'rooms': return args ? usage('/rooms') : sendOr({ type: 'rooms' });
    case 'history': {
      const n = args ? Number(args) : 20;
      if (!Number.isInteger(n) || n < 1 || n > 500) return usage('/history [N] (N from 1 to 500)');
      loadOlder(current, n, true);
      return true;
    }
    case 'login':
      if (!oneWord) return usage('/login ACCOUNT (the password is asked for next, never on the line)');
      openLogin(args);
      return true;
    case 'register':
      if (args) return usage('/register (it registers your current nickname; the password is asked for next)');
      openLogin(isGuest(myNick) ? '' : myNick);
      return true;
    case 'logout': return args ? usage('/logout') : sendOr({ type: 'logout' });
    case 'quit':
      quitting = true;
      if (!send(args ? { type: 'quit', text: args } : { type: 'quit' })) lost();
      return true;
    case 'help':
      sys(null, HELP.join('\n'));
      return true;
    default:
      sys(null, 'unknown command /' + name + '; /help lists the commands (//TEXT sends /TEXT)', true);
      return true;
  }
}

function submit() {
  const text = ui.composer.value.replace(/\n+$/, '');
  if (!text.trim()) return;
  const done = text.startsWith('/') ? command(text) : say(text);
  if (done !== false) {
    if (sent[sent.length - 1] !== text) sent.push(text);
    if (sent.length > 100) sent.shift();
    recall = null;
    ui.composer.value = '';
    grow();
  }
}

// What was sent, for Up and Down as in a shell or the terminal client;
// `recall` is where Up has got to, and the draft it left.
const sent = [];
let recall = null;
/** Up at the first line of the box goes back, Down at the last forward. */
function recallLine(back) {
  const box = ui.composer;
  const before = box.value.slice(0, box.selectionStart);
  const after = box.value.slice(box.selectionEnd);
  if (back ? before.includes('\n') : after.includes('\n')) return false;
  if (!recall) {
    if (!back || !sent.length) return false;
    recall = { at: sent.length, draft: box.value };
  }
  const at = recall.at + (back ? -1 : 1);
  if (at < 0) return true;
  recall.at = at;
  box.value = at < sent.length ? sent[at] : recall.draft;
  if (at >= sent.length) recall = null;
  grow();
  box.setSelectionRange(box.value.length, box.value.length);
  return true;
}
/**
 * Tab after the start of a nick completes it from the room's members
 * (with ": " at the start of a line); with nothing to complete, Tab moves
 * the focus on as everywhere else.
 */
function complete() {
  const box = ui.composer;
  if (box.selectionStart !== box.selectionEnd || !current) return false;
  const before = box.value.slice(0, box.selectionStart);
  const word = /[^\s]+$/.exec(before);
  if (!word) return false;
  const nicks = current.peer ? [current.peer] : [...current.members.values()];
  const want = fold(word[0]);
  const found = nicks.filter((n) => n !== myNick && fold(n).startsWith(want)).sort();
  if (!found.length) return false;
  const nick = found[0];
  const start = before.length - word[0].length;
  const tail = start === 0 ? ': ' : ' ';
  box.value = before.slice(0, start) + nick + tail + box.value.slice(box.selectionEnd);
  const caret = start + nick.length + tail.length;
  box.setSelectionRange(caret, caret);
  return true;
}
function grow() {
  ui.composer.rows = Math.min(6, ui.composer.value.split('\n').length);
}

// ---- the login dialog ----

function openLogin(name) {
  ui.account.value = name || '';
  ui.password.value = '';
  ui.loginError.textContent = '';
  if (!ui.login.open) ui.login.showModal();
  (name ? ui.password : ui.account).focus();
}
function credentials() {
  const acc = ui.account.value.trim();
  const pw = ui.password.value;
  if (!acc || !pw) { ui.loginError.textContent = 'Give an account name and a password.'; return null; }
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    ui.loginError.textContent = 'Not connected; try again when the status says Connected.';
    return null;
  }
  ui.loginError.textContent = '';
  return { account: acc, password: pw };
}
ui.loginForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const c = credentials();
  if (!c) return;
  auth = { kind: 'login', account: c.account, password: c.password };
  send({ type: 'login', account: c.account, password: c.password });
});
$('register-submit').addEventListener('click', () => {
  const c = credentials();
  if (!c) return;
  auth = { kind: 'register', account: c.account, password: c.password, waitNick: false };
  if (fold(c.account) !== fold(myNick)) {
    auth.waitNick = true;
    send({ type: 'nick', nick: c.account });
  } else {
    send({ type: 'register', password: c.password });
  }
});
$('login-cancel').addEventListener('click', () => ui.login.close());
ui.login.addEventListener('close', () => {
  ui.password.value = '';
  ui.composer.focus();
});
ui.loginOpen.addEventListener('click', () => openLogin(''));

// ---- wiring ----

ui.send.addEventListener('submit', (e) => { e.preventDefault(); submit(); ui.composer.focus(); });
ui.composer.addEventListener('keydown', (e) => {
  if (e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); submit(); }
  else if ((e.key === 'ArrowUp' || e.key === 'ArrowDown') && !e.shiftKey) {
    if (recallLine(e.key === 'ArrowUp')) e.preventDefault();
  } else if (e.key === 'Tab' && !e.shiftKey && complete()) e.preventDefault();
});
ui.composer.addEventListener('input', grow);
ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const room = ui.joinRoom.value.trim();
  if (room && command('/join ' + room) !== false) ui.joinRoom.value = '';
});
ui.log.addEventListener('scroll', () => {
  if (!current) return;
  current.stick = atBottom();
  if (current.stick) ui.jump.hidden = true;
  if (ui.log.scrollTop < 60) loadOlder(current, 50);
}, { passive: true });
const memberOf = (e) => e.target.closest && e.target.closest('li.member');
ui.members.addEventListener('click', (e) => { const li = memberOf(e); if (li) openPeer(li.dataset.nick); });
ui.members.addEventListener('keydown', (e) => {
  const li = memberOf(e);
  if (li && e.key === 'Enter') { e.preventDefault(); openPeer(li.dataset.nick); }
});

/** The phone's panels: at most one open, over the messages. */
function panels(which) {
  document.body.classList.toggle('show-rooms', which === 'rooms');
  document.body.classList.toggle('show-members', which === 'members');
  ui.roomsToggle.setAttribute('aria-expanded', String(which === 'rooms'));
  ui.membersToggle.setAttribute('aria-expanded', String(which === 'members'));
}
$('part').addEventListener('click', () => { if (current) command('/part'); });
ui.jump.addEventListener('click', () => { toEnd(); ui.composer.focus(); });
// On a phone, a tap on the messages closes an open panel.
ui.log.addEventListener('click', () => panels(null));
ui.roomsToggle.addEventListener('click', () => {
  panels(document.body.classList.contains('show-rooms') ? null : 'rooms');
});
ui.membersToggle.addEventListener('click', () => {
  panels(document.body.classList.contains('show-members') ? null : 'members');
});

document.addEventListener('keydown', (e) => {
  if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
    e.preventDefault();
    cycle(e.key === 'ArrowUp' ? -1 : 1);
  } else if (e.key === 'Escape' && !ui.login.open) {
    panels(null);
    ui.composer.focus();
  }
});
// The on-screen keyboard shrinks the log: a reader at the end stays there.
new ResizeObserver(() => { if (current && current.stick) ui.log.scrollTop = ui.log.scrollHeight; })
  .observe(ui.log);
window.addEventListener('online', reconnectNow);
document.addEventListener('visibilitychange', () => { if (!document.hidden) reconnectNow(); });

connect();
ui.composer.focus();
