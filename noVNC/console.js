// VM Manager's console page: noVNC's RFB on a websocket at <this page's URL>/ws, scaled to the window,
// with a status line, Ctrl+Alt+Del, paste-as-keystrokes and reconnection with back-off.
//
// Served at /static/console.js; noVNC (installed by scripts/install_novnc.sh) at /novnc/. The page's
// state is on <body> for tests and scripts: data-state (loading, connecting, connected, disconnected,
// ended), data-connects (connections made so far), data-reason (why the last one ended, as the
// server tells it when it does), data-retries (retries scheduled so far);
// window.vmmConsole offers the same and a few calls (typeText, ctrlAltDel, reconnect).

// noVNC's modules, loaded by main(): a server without noVNC installed gets a clear status, not a blank page.
const NOVNC = '/novnc/core/';
let RFB = null;
let KeyTable = null;
let keysyms = null;

// Every text the page shows, in one place, per language. The server writes the language it chose for
// the request (the portal's: its switch, else the browser's) into <html lang>; reasons the server
// gives come already translated.
const TEXTS = {
    en: {
        title: 'Console',
        titleNamed: (name) => `${name} — Console`,
        loading: 'Loading…',
        connecting: 'Connecting…',
        connected: 'Connected',
        disconnected: 'Disconnected',
        retryIn: (seconds) => `reconnecting in ${seconds} s`,
        ended: 'Console closed',
        reasonLost: 'the connection was lost',
        reasonUnreachable: 'the VM does not answer (is it running?)',
        reasonNoAccess: 'this console link is no longer valid: ask for a new one',
        reasonServer: (why) => `the server closed the console: ${why}`,
        reasonSecurity: (why) => `the VM refused the connection${why ? `: ${why}` : ''}`,
        reasonPassword: 'the VM asks for a password, which this page cannot give',
        reasonNoModule: 'the console could not start (noVNC is missing on the server)',
        reasonClosedHere: 'closed on this page',
        reconnect: 'Reconnect now',
        ctrlAltDel: 'Ctrl+Alt+Del',
        ctrlAltDelTitle: 'Send Ctrl+Alt+Del to the VM',
        paste: 'Paste…',
        pasteTitle: 'Type text into the VM as key presses (the VM has no shared clipboard)',
        pasteLabel: 'Text to type into the VM:',
        pasteHint: 'Sent as key presses for a US keyboard layout; new lines press Enter.',
        pasteSend: 'Type it',
        pasteStop: 'Stop',
        pasteClose: 'Close',
        pasteProgress: (done, total) => `Typing… ${done} of ${total}`,
        pasteDone: (total) => `Typed ${total} character${total === 1 ? '' : 's'}.`,
        pasteStopped: (done, total) => `Stopped after ${done} of ${total}.`,
        pasteOdd: (count) => ` ${count} character${count === 1 ? ' is' : 's are'} not on a US keyboard `
            + 'and may not arrive.',
    },
    fr: {
        title: 'Console',
        titleNamed: (name) => `${name} — Console`,
        loading: 'Chargement…',
        connecting: 'Connexion…',
        connected: 'Connecté',
        disconnected: 'Déconnecté',
        retryIn: (seconds) => `nouvel essai dans ${seconds} s`,
        ended: 'Console fermée',
        reasonLost: 'la connexion a été perdue',
        reasonUnreachable: 'la VM ne répond pas (est-elle démarrée ?)',
        reasonNoAccess: 'ce lien de console n’est plus valable : demandez-en un nouveau',
        reasonServer: (why) => `le serveur a fermé la console : ${why}`,
        reasonSecurity: (why) => `la VM a refusé la connexion${why ? ` : ${why}` : ''}`,
        reasonPassword: 'la VM demande un mot de passe, que cette page ne peut pas donner',
        reasonNoModule: 'la console n’a pas pu démarrer (noVNC manque sur le serveur)',
        reasonClosedHere: 'fermée sur cette page',
        reconnect: 'Se reconnecter',
        ctrlAltDel: 'Ctrl+Alt+Suppr',
        ctrlAltDelTitle: 'Envoyer Ctrl+Alt+Suppr à la VM',
        paste: 'Coller…',
        pasteTitle: 'Taper du texte dans la VM, touche par touche (la VM n’a pas de presse-papiers partagé)',
        pasteLabel: 'Texte à taper dans la VM :',
        pasteHint: 'Envoyé comme des touches d’un clavier américain (US) ; un saut de ligne appuie sur Entrée.',
        pasteSend: 'Le taper',
        pasteStop: 'Arrêter',
        pasteClose: 'Fermer',
        pasteProgress: (done, total) => `Frappe… ${done} sur ${total}`,
        pasteDone: (total) => `${total} caractère${total > 1 ? 's' : ''} tapé${total > 1 ? 's' : ''}.`,
        pasteStopped: (done, total) => `Arrêté après ${done} sur ${total}.`,
        pasteOdd: (count) => ` ${count} caractère${count > 1 ? 's ne sont' : ' n’est'} pas sur un clavier US `
            + `et risque${count > 1 ? 'nt' : ''} de ne pas arriver.`,
    },
};
const TEXT = TEXTS[document.documentElement.lang] || TEXTS.en;

// Reconnection: the first retry after RETRY_FIRST_MS, then doubling up to RETRY_MAX_MS, ±20 % jitter
// (a class whose VMs restart together does not come back in one wave).
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 10000;
// QEMU spaces the key events a VNC client sends by 10 ms (its key-delay-ms) and drops those that
// overflow its input queue: pasting waits as long per event, so the queue never fills.
const PASTE_MS_PER_EVENT = 12;
// The server's websocket close codes (core/web/proxy.py): a revoked or expired link ends the page;
// a VM that stopped is waited for (the page comes back when it runs again).
const CLOSE_REVOKED = 4001;
const CLOSE_POLICY = 1008;
const FINAL_CLOSE = (code) => code === CLOSE_REVOKED || code === CLOSE_POLICY;

const $ = (id) => document.getElementById(id);
const ui = {
    status: $('status'),
    name: $('name'),
    screen: $('screen'),
    overlay: $('overlay'),
    overlayText: $('overlay-text'),
    reconnect: $('reconnect'),
    ctrlAltDel: $('ctrlaltdel'),
    pasteToggle: $('paste-toggle'),
    paste: $('paste'),
    pasteText: $('paste-text'),
    pasteNote: $('paste-note'),
    pasteSend: $('paste-send'),
    pasteClose: $('paste-cancel'),
};

const page = {
    rfb: null,
    socket: null,
    state: 'loading',
    reason: '',
    connects: 0,
    attempts: 0,          // failed attempts since the last connection: the back-off exponent
    retries: 0,           // retries scheduled since the page was opened
    retryTimer: null,
    closedHere: false,    // disconnect() was asked for: no retry
    countdownTimer: null,
    typing: null,         // {stop: bool} while a paste is being typed
    keysTyped: 0,         // characters typed by paste since the page was opened
};

// ---- the status line ----

function setState(state, reason = '') {
    page.state = state;
    page.reason = reason;
    document.body.dataset.state = state;
    document.body.dataset.reason = reason;
    document.body.dataset.connects = String(page.connects);
    const connected = state === 'connected';
    ui.ctrlAltDel.disabled = !connected;
    ui.pasteToggle.disabled = !connected;
    ui.pasteSend.disabled = !connected && !page.typing;
    ui.reconnect.hidden = state !== 'disconnected';
    showStatus();
}

function showStatus(extra = '') {
    const head = {
        loading: TEXT.loading,
        connecting: TEXT.connecting,
        connected: TEXT.connected,
        disconnected: TEXT.disconnected,
        ended: TEXT.ended,
    }[page.state];
    const parts = [page.reason, extra].filter(Boolean);
    ui.status.textContent = parts.length ? `${head}: ${parts.join(' — ')}` : head;
    const blocking = page.state === 'disconnected' || page.state === 'ended';
    ui.overlay.hidden = !blocking;
    ui.overlayText.textContent = ui.status.textContent;
}

// ---- connecting ----

function socketUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const path = location.pathname.replace(/\/+$/, '');
    return `${scheme}//${location.host}${path}/ws`;
}

function connect() {
    clearRetry();
    if (page.rfb) {
        return;
    }
    setState('connecting');
    let socket;
    try {
        socket = new WebSocket(socketUrl());
    } catch (err) {
        ended(String(err));
        return;
    }
    socket.binaryType = 'arraybuffer';
    const rfb = new RFB(ui.screen, socket, { shared: true });
    page.rfb = rfb;
    page.socket = socket;
    let closeInfo = null;
    let refused = '';
    socket.addEventListener('close', (event) => {
        closeInfo = { code: event.code, reason: event.reason };
    });
    rfb.scaleViewport = true;
    rfb.resizeSession = false;
    rfb.clipViewport = false;
    rfb.showDotCursor = true;
    rfb.focusOnClick = true;
    rfb.background = '#000';
    rfb.addEventListener('connect', () => {
        page.connects += 1;
        page.attempts = 0;
        setState('connected');
        rfb.focus();
    });
    rfb.addEventListener('desktopname', (event) => {
        const name = event.detail.name || '';
        ui.name.textContent = name;
        document.title = name ? TEXT.titleNamed(name) : TEXT.title;
    });
    rfb.addEventListener('securityfailure', (event) => {
        refused = TEXT.reasonSecurity(event.detail.reason || '');
    });
    rfb.addEventListener('credentialsrequired', () => {
        refused = TEXT.reasonPassword;
        rfb.disconnect();
    });
    rfb.addEventListener('disconnect', () => {
        const wasConnected = page.state === 'connected';
        page.rfb = null;
        page.socket = null;
        stopTyping();
        if (page.closedHere) {
            ended(TEXT.reasonClosedHere);
            return;
        }
        setState('disconnected', wasConnected ? TEXT.reasonLost : '');
        // The socket's close event may come a moment after noVNC gave up on it.
        setTimeout(() => afterDisconnect(wasConnected, closeInfo, refused), 0);
    });
}

async function afterDisconnect(wasConnected, closeInfo, refused) {
    if (refused === TEXT.reasonPassword) {
        ended(refused);
        return;
    }
    if (closeInfo && FINAL_CLOSE(closeInfo.code)) {
        ended(closeInfo.reason ? TEXT.reasonServer(closeInfo.reason) : TEXT.reasonNoAccess);
        return;
    }
    // A refused websocket upgrade tells the browser nothing: ask the server why (the VM is off, it
    // has no display, no console port is free, this link no longer works...) before trying again.
    const status = await consoleStatus();
    if (page.rfb || page.state === 'ended') {
        return;   // reconnected (or closed) meanwhile, by the button or the tab coming back
    }
    if (status && status.final) {
        ended(status.reason || TEXT.reasonNoAccess);
        return;
    }
    let reason = refused;
    if (!reason) {
        reason = wasConnected ? TEXT.reasonLost : TEXT.reasonUnreachable;
        if (closeInfo && closeInfo.reason) {
            reason = TEXT.reasonServer(closeInfo.reason);
        }
        if (status && status.reason) {
            reason = status.reason;
        }
    }
    if (!wasConnected) {
        page.attempts += 1;
    }
    page.retries += 1;
    document.body.dataset.retries = String(page.retries);
    scheduleRetry(reason);
}

// The server's verdict on this console (core/web/app.py, console_status): {final, running, reason},
// the reason in the page's language; final when trying again is useless (this link no longer works,
// the VM has no VNC display or runs on another machine). A POST, so that the browser sends its
// Origin, which the server checks as for the websocket. null when the server does not say (it is
// down or restarting, or an older one): keep trying.
async function consoleStatus() {
    try {
        const answer = await fetch(`${location.pathname.replace(/\/+$/, '')}/status`, {
            method: 'POST', cache: 'no-store', credentials: 'same-origin', redirect: 'error',
        });
        const type = answer.headers.get('Content-Type') || '';
        if (!type.startsWith('application/json')) {
            return null;
        }
        const body = await answer.json();
        return { final: Boolean(body.final), running: Boolean(body.running), reason: String(body.reason || '') };
    } catch (err) {
        return null;
    }
}

function retryDelay() {
    const base = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.max(0, page.attempts - 1));
    return Math.round(base * (0.8 + 0.4 * Math.random()));
}

function scheduleRetry(reason) {
    clearRetry();
    setState('disconnected', reason);
    const due = Date.now() + retryDelay();
    const tick = () => {
        const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
        showStatus(TEXT.retryIn(left));
    };
    tick();
    page.countdownTimer = setInterval(tick, 1000);
    page.retryTimer = setTimeout(connect, due - Date.now());
}

function clearRetry() {
    clearTimeout(page.retryTimer);
    clearInterval(page.countdownTimer);
    page.retryTimer = null;
    page.countdownTimer = null;
}

function ended(reason) {
    clearRetry();
    setState('ended', reason);
}

function reconnectNow() {
    if (page.state === 'disconnected') {
        page.attempts = 0;
        connect();
    }
}

// ---- Ctrl+Alt+Del ----

function ctrlAltDel() {
    if (page.rfb && page.state === 'connected') {
        page.rfb.sendCtrlAltDel();
        page.rfb.focus();
        return true;
    }
    return false;
}

// ---- paste as keystrokes ----
// QEMU's VNC server has no clipboard: text is typed. With QEMU's extended key events noVNC sends
// PC scancodes, which the guest reads through its own keyboard layout, so every character becomes
// the key of a US layout that makes it, with Shift held around it when the character needs Shift.

const US_KEYS = new Map();
(() => {
    const pairs = [
        ['`~', 'Backquote'], ['1!', 'Digit1'], ['2@', 'Digit2'], ['3#', 'Digit3'], ['4$', 'Digit4'],
        ['5%', 'Digit5'], ['6^', 'Digit6'], ['7&', 'Digit7'], ['8*', 'Digit8'], ['9(', 'Digit9'],
        ['0)', 'Digit0'], ['-_', 'Minus'], ['=+', 'Equal'], ['[{', 'BracketLeft'], [']}', 'BracketRight'],
        ['\\|', 'Backslash'], [';:', 'Semicolon'], ['\'"', 'Quote'], [',<', 'Comma'], ['.>', 'Period'],
        ['/?', 'Slash'],
    ];
    for (const [plain, code] of pairs) {
        US_KEYS.set(plain[0], { code, shift: false });
        US_KEYS.set(plain[1], { code, shift: true });
    }
    for (let i = 0; i < 26; i++) {
        const lower = String.fromCharCode(97 + i);
        const code = `Key${lower.toUpperCase()}`;
        US_KEYS.set(lower, { code, shift: false });
        US_KEYS.set(lower.toUpperCase(), { code, shift: true });
    }
    US_KEYS.set(' ', { code: 'Space', shift: false });
})();

// One stroke per character: {keysym, code (null: keysym only), shift}.
function strokes(text) {
    const out = [];
    for (const ch of text.replace(/\r\n?/g, '\n')) {
        if (ch === '\n') {
            out.push({ keysym: KeyTable.XK_Return, code: 'Enter', shift: false });
        } else if (ch === '\t') {
            out.push({ keysym: KeyTable.XK_Tab, code: 'Tab', shift: false });
        } else if (US_KEYS.has(ch)) {
            const key = US_KEYS.get(ch);
            out.push({ keysym: ch.codePointAt(0), code: key.code, shift: key.shift });
        } else {
            out.push({ keysym: keysyms.lookup(ch.codePointAt(0)), code: null, shift: false, odd: true });
        }
    }
    return out;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Types text into the VM; resolves to the number of characters typed.
async function typeText(text) {
    if (page.typing) {
        return 0;
    }
    const todo = strokes(text);
    const odd = todo.filter((s) => s.odd).length;
    const typing = { stop: false };
    page.typing = typing;
    ui.pasteSend.textContent = TEXT.pasteStop;
    let done = 0;
    try {
        for (const stroke of todo) {
            const rfb = page.rfb;
            if (typing.stop || !rfb || page.state !== 'connected') {
                break;
            }
            if (stroke.shift) {
                rfb.sendKey(KeyTable.XK_Shift_L, 'ShiftLeft', true);
            }
            rfb.sendKey(stroke.keysym, stroke.code, true);
            rfb.sendKey(stroke.keysym, stroke.code, false);
            if (stroke.shift) {
                rfb.sendKey(KeyTable.XK_Shift_L, 'ShiftLeft', false);
            }
            done += 1;
            page.keysTyped += 1;
            if (done % 10 === 0 || done === todo.length) {
                ui.pasteNote.textContent = TEXT.pasteProgress(done, todo.length);
            }
            await sleep(PASTE_MS_PER_EVENT * (stroke.shift ? 4 : 2));
        }
    } finally {
        page.typing = null;
        ui.pasteSend.textContent = TEXT.pasteSend;
        ui.pasteSend.disabled = page.state !== 'connected';
        ui.pasteNote.textContent = (done === todo.length ? TEXT.pasteDone(done) : TEXT.pasteStopped(done, todo.length))
            + (odd ? TEXT.pasteOdd(odd) : '');
        document.body.dataset.typed = String(page.keysTyped);
    }
    return done;
}

function stopTyping() {
    if (page.typing) {
        page.typing.stop = true;
    }
}

function togglePaste(open = ui.paste.hidden) {
    ui.paste.hidden = !open;
    ui.pasteToggle.setAttribute('aria-expanded', String(open));
    if (open) {
        ui.pasteText.focus();
    } else if (page.rfb) {
        page.rfb.focus();
    }
}

// ---- wiring ----

function fillTexts() {
    document.title = TEXT.title;
    ui.reconnect.textContent = TEXT.reconnect;
    ui.ctrlAltDel.textContent = TEXT.ctrlAltDel;
    ui.ctrlAltDel.title = TEXT.ctrlAltDelTitle;
    ui.pasteToggle.textContent = TEXT.paste;
    ui.pasteToggle.title = TEXT.pasteTitle;
    $('paste-label').textContent = TEXT.pasteLabel;
    ui.pasteNote.textContent = TEXT.pasteHint;
    ui.pasteSend.textContent = TEXT.pasteSend;
    ui.pasteClose.textContent = TEXT.pasteClose;
}

function start() {
    ui.reconnect.addEventListener('click', reconnectNow);
    ui.ctrlAltDel.addEventListener('click', ctrlAltDel);
    ui.pasteToggle.addEventListener('click', () => togglePaste());
    ui.pasteClose.addEventListener('click', () => { stopTyping(); togglePaste(false); });
    ui.pasteSend.addEventListener('click', () => {
        if (page.typing) {
            stopTyping();
        } else {
            typeText(ui.pasteText.value);
        }
    });
    // Coming back to the tab, or back online: no need to wait for the next retry.
    document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible') {
            reconnectNow();
        }
    });
    window.addEventListener('online', reconnectNow);
    window.vmmConsole = {
        get state() { return page.state; },
        get reason() { return page.reason; },
        get connects() { return page.connects; },
        get keysTyped() { return page.keysTyped; },
        get rfb() { return page.rfb; },
        typeText,
        ctrlAltDel,
        reconnect: reconnectNow,
        disconnect() {
            page.closedHere = true;
            stopTyping();
            clearRetry();
            if (page.rfb) {
                page.rfb.disconnect();
            } else {
                ended(TEXT.reasonClosedHere);
            }
        },
    };
    connect();
}

async function main() {
    fillTexts();
    try {
        [RFB, KeyTable, keysyms] = (await Promise.all([
            import(`${NOVNC}rfb.js`), import(`${NOVNC}input/keysym.js`), import(`${NOVNC}input/keysymdef.js`),
        ])).map((module) => module.default);
    } catch (err) {
        ended(TEXT.reasonNoModule);
        return;
    }
    start();
}

main();
