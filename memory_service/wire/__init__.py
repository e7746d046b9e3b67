"""What the Python client and the server share, and nothing else: the tool messages with their
framings and output rules (`messages`), and the exceptions both raise for a broken stream or a
server's error answer (`errors`). Imports nothing of the server, so the client (and the Dify
plugin, which vendors the client) can carry it alone.
"""
