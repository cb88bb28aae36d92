// The inline scripts of the Rotterdam ZMI, as a script of the server.
//
// The server's Content-Security-Policy (script-src 'self') blocks inline
// scripts and event handler attributes, so this script does what they
// did: it starts the navigation tree (the page of the server gives its
// addresses as data attributes, see app/navigation_macros.pt), selects
// all checkboxes of the folder contents, and focuses the name of a new
// item.  It runs nothing a page's text says: it only recognises the
// ZMI's fixed handlers.
(function () {
    'use strict';

    var SELECT_ALL = "updateCheckboxes(this, 'slaveBox');";

    function navigationTree() {
        var tree = document.getElementById('navtreecontents');
        if (!tree || tree.getAttribute('data-root-url') === null ||
                typeof loadtree !== 'function') {
            return;
        }
        tree.addEventListener('click', treeclicked);
        loadtree(tree.getAttribute('data-root-url'),
                 tree.getAttribute('data-base-url'));
    }

    function selectAll() {
        var boxes = document.querySelectorAll(
            'input[type="checkbox"][onchange]');
        Array.prototype.forEach.call(boxes, function (box) {
            if (box.getAttribute('onchange') === SELECT_ALL) {
                box.addEventListener('change', function () {
                    updateCheckboxes(box, 'slaveBox');
                });
            }
        });
    }

    function focusNewName() {
        var form = document.forms.containerContentsForm;
        if (form && form.new_value && form.new_value.focus) {
            form.new_value.focus();
        }
    }

    function ready() {
        navigationTree();
        selectAll();
        focusNewName();
    }

    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', ready);
    } else {
        ready();
    }
}());
