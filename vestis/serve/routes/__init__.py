"""The HTTP routes, one router per concern; :func:`vestis.serve.app.create_app` mounts them all."""
