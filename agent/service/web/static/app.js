// scenewatch's page: what htmx attributes do not say. No inline script runs (the CSP forbids it).
"use strict";

(function () {
  const detail = () => document.getElementById("detail");

  // A fragment loaded into the details dialog opens it.
  document.body.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (target && target.id === "detail-body" && !detail().open) detail().showModal();
  });

  // A form marked data-reset empties itself after it was sent.
  document.body.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (event.detail.successful && form.matches && form.matches("form[data-reset]")) form.reset();
  });

  // Errors of fragment requests (JSON {"error": ...}) show in a toast.
  document.body.addEventListener("htmx:responseError", (event) => {
    let message = `request failed (${event.detail.xhr.status})`;
    try { message = JSON.parse(event.detail.xhr.responseText).error || message; } catch (_) { /* not JSON */ }
    toast(message);
  });
  document.body.addEventListener("htmx:sendError", () => toast("the server cannot be reached"));

  function toast(message) {
    const box = document.getElementById("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(box.hideTimer);
    box.hideTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  // The live stream's state, in the header.
  const live = document.getElementById("live");
  if (live) {
    document.body.addEventListener("htmx:sseOpen", (event) => {
      if (event.detail.elt.tagName === "MAIN") { live.textContent = "live"; live.className = "live on"; }
    });
    document.body.addEventListener("htmx:sseError", (event) => {
      if (event.detail.elt.tagName === "MAIN") { live.textContent = "reconnecting"; live.className = "live off"; }
    });
  }

  // Chat: the question goes to POST /api/ask; the answer streams back as Server-Sent Events.
  const ask = document.getElementById("ask");
  if (ask) setUpChat(ask);

  function setUpChat(form) {
    const log = document.getElementById("chat-log");
    const KEY = "scenewatch.threads";
    showThreads();
    form.question.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const question = form.question.value.trim();
      if (question && !form.classList.contains("busy")) send(question);
    });

    function line(who, text) {
      const hint = log.querySelector(".hint");
      if (hint) hint.remove();
      const item = document.createElement("li");
      item.className = `said ${who}`;
      item.textContent = text;
      log.appendChild(item);
      item.scrollIntoView({ block: "end" });
      return item;
    }

    async function send(question) {
      form.classList.add("busy");
      line("you", question);
      const answer = line("agent streaming", "");
      form.question.value = "";
      const body = { question, thread: form.dataset.thread || null, source: form.source.value || null };
      try {
        const response = await fetch("/api/ask", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(body),
        });
        if (!response.ok) {
          let message = `the question failed (${response.status})`;
          try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
          throw new Error(message);
        }
        await readEvents(response, (kind, data) => {
          if (kind === "thread") keepThread(data.thread, question);
          else if (kind === "token") answer.textContent += data.text;
          else if (kind === "done") finish(answer, data.answer);
          else if (kind === "error") throw new Error(data.error);
        });
      } catch (error) {
        answer.classList.add("error");
        answer.textContent = error.message;
      } finally {
        answer.classList.remove("streaming");
        form.classList.remove("busy");
      }
    }

    // The finished answer, with the times it cites linked into the timeline (rendered by the server).
    function finish(element, text) {
      element.textContent = text;
      htmx.ajax("POST", "/ui/chat/answer", { target: element, swap: "innerHTML", values: { text } });
    }

    async function readEvents(response, handle) {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message";
          const data = [];
          for (const row of block.split("\n")) {
            if (row.startsWith("event:")) kind = row.slice(6).trim();
            else if (row.startsWith("data:")) data.push(row.slice(5).replace(/^ /, ""));
          }
          if (data.length) handle(kind, JSON.parse(data.join("\n")));
        }
      }
    }

    function keepThread(thread, question) {
      form.dataset.thread = thread;
      history.replaceState(null, "", `/chat?thread=${encodeURIComponent(thread)}`);
      const threads = stored().filter((item) => item.id !== thread);
      const title = (stored().find((item) => item.id === thread) || {}).title || question;
      threads.unshift({ id: thread, title: title.slice(0, 80), at: Date.now() });
      localStorage.setItem(KEY, JSON.stringify(threads.slice(0, 30)));
      document.getElementById("threads").dataset.current = thread;
      showThreads();
    }

    function stored() {
      try { return JSON.parse(localStorage.getItem(KEY)) || []; } catch (_) { return []; }
    }

    function showThreads() {
      const list = document.getElementById("threads");
      list.replaceChildren();
      for (const item of stored()) {
        const entry = document.createElement("li");
        const link = document.createElement("a");
        link.href = `/chat?thread=${encodeURIComponent(item.id)}`;
        link.textContent = item.title;
        if (item.id === list.dataset.current) link.setAttribute("aria-current", "page");
        entry.appendChild(link);
        list.appendChild(entry);
      }
      if (!list.children.length) {
        const none = document.createElement("li");
        none.className = "empty";
        none.textContent = "Your conversations will be listed here.";
        list.appendChild(none);
      }
    }
  }
})();
