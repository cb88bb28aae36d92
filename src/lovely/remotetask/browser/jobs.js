// The live refresh of the Jobs tab (jobs.pt, jobs.py's JobsData).
//
// Every few seconds, while the "Live refresh" box is checked (it is by
// default; the choice is kept in the browser's localStorage), the page
// asks jobs.json (same query, same permission) for the counts and the
// rows of the table, and puts them in place without a reload: the counts
// always, the rows on the first page only, and not while jobs are
// selected (the user is choosing what a button will act on).  A script
// of the server (CSP script-src 'self'): no inline script, no library.
//
// The rows come as data (table.py's rowData: cells of nodes, see
// util.py), built here with createElement, setAttribute and textContent
// only: nothing the server sends is parsed as markup (no innerHTML), only
// the elements and attributes of TAGS and ATTRIBUTES are made, and a
// link only to an http(s) address.
(function () {
    'use strict';

    var KEY = 'lovely.remotetask.liveRefresh';
    var box = document.getElementById('live-refresh');
    if (!box || !window.fetch || !window.JSON) {
        return;
    }
    var url = box.getAttribute('data-url');
    var interval = 1000 * (parseFloat(box.getAttribute('data-interval')) || 3);
    var firstPage = box.getAttribute('data-first-page') === '1';
    var state = document.querySelector('.live-state');
    var paused = document.querySelector('.live-paused');
    var timer = null;
    var busy = false;
    // What a cell may have (as util.py's TAGS and ATTRIBUTES).
    var TAGS = ['a', 'span', 'input'];
    var ATTRIBUTES = ['class', 'title', 'href', 'type', 'name', 'value'];

    function stored() {
        try {
            return window.localStorage.getItem(KEY);
        } catch (e) {
            return null;
        }
    }

    function store(value) {
        try {
            window.localStorage.setItem(KEY, value);
        } catch (e) {
            // No storage (a private window): the box still works.
        }
    }

    function form() {
        return document.querySelector('form.jobs');
    }

    function selecting() {
        var jobs = form();
        return jobs !== null && jobs.querySelector(
            'input[type="checkbox"][name="jobs:list"]:checked') !== null;
    }

    function setText(element, text) {
        if (element.textContent !== String(text)) {
            element.textContent = String(text);
        }
    }

    function showCounts(data) {
        var counts = document.querySelectorAll('.count[data-status]');
        Array.prototype.forEach.call(counts, function (count) {
            var status = count.getAttribute('data-status');
            if (status === '') {
                setText(count, data.total);
            } else if (status === 'found') {
                setText(count, data.found);
            } else if (Object.prototype.hasOwnProperty.call(
                    data.counts, status)) {
                setText(count, data.counts[status]);
            }
        });
    }

    function webAddress(value) {
        try {
            var protocol = new URL(value, window.location.href).protocol;
            return protocol === 'http:' || protocol === 'https:';
        } catch (e) {
            return false;
        }
    }

    // A node of a cell: text, or an element with attributes and text.
    function buildNode(node) {
        if (typeof node === 'string') {
            return document.createTextNode(node);
        }
        if (node === null || typeof node !== 'object'
                || TAGS.indexOf(node.tag) < 0) {
            return document.createTextNode('');
        }
        var element = document.createElement(node.tag);
        var attrs = node.attrs || {};
        Object.keys(attrs).forEach(function (name) {
            var value = String(attrs[name]);
            if (ATTRIBUTES.indexOf(name) < 0
                    || (name === 'href' && !webAddress(value))) {
                return;
            }
            element.setAttribute(name, value);
        });
        if (node.tag === 'input') {
            if (element.getAttribute('type') !== 'checkbox') {
                return document.createTextNode('');
            }
        } else if (node.text) {
            element.textContent = String(node.text);
        }
        return element;
    }

    function buildRow(row) {
        var tr = document.createElement('tr');
        tr.setAttribute('class', String(row['class'] || ''));
        (row.cells || []).forEach(function (cell) {
            var td = document.createElement('td');
            td.setAttribute('class', String(cell['class'] || ''));
            (cell.nodes || []).forEach(function (node) {
                td.appendChild(buildNode(node));
            });
            tr.appendChild(td);
        });
        return tr;
    }

    function showRows(data) {
        var body = document.querySelector('table.jobs tbody');
        if (!firstPage || !Array.isArray(data.rows) || body === null) {
            return;
        }
        var hold = selecting();
        if (paused) {
            paused.hidden = !hold;
        }
        if (hold) {
            return;
        }
        var rows = document.createDocumentFragment();
        data.rows.forEach(function (row) {
            rows.appendChild(buildRow(row));
        });
        while (body.firstChild) {
            body.removeChild(body.firstChild);
        }
        body.appendChild(rows);
        var table = body.parentNode;
        var empty = document.querySelector('form.jobs .empty');
        table.hidden = data.rows.length === 0;
        if (empty) {
            empty.hidden = data.rows.length !== 0;
        }
    }

    function refresh() {
        if (busy || document.hidden) {
            return;
        }
        busy = true;
        fetch(url, {credentials: 'same-origin',
                    headers: {'Accept': 'application/json'}})
            .then(function (response) {
                if (!response.ok) {
                    throw new Error('HTTP ' + response.status);
                }
                return response.json();
            })
            .then(function (data) {
                showCounts(data);
                showRows(data);
                if (state) {
                    setText(state, '');
                }
                document.body.setAttribute('data-refreshed',
                                           String(Date.now()));
            })
            .catch(function (error) {
                if (state) {
                    setText(state, 'refresh failed: ' + error.message);
                }
            })
            .then(function () {
                busy = false;
            });
    }

    function apply() {
        if (timer !== null) {
            window.clearInterval(timer);
            timer = null;
        }
        if (box.checked) {
            timer = window.setInterval(refresh, interval);
        }
    }

    box.checked = stored() !== 'off';
    box.addEventListener('change', function () {
        store(box.checked ? 'on' : 'off');
        apply();
    });
    var jobs = form();
    if (jobs !== null) {
        // A selection made or undone shows or hides the note at once.
        jobs.addEventListener('change', function () {
            if (paused) {
                paused.hidden = !selecting();
            }
        });
    }
    apply();
}());
