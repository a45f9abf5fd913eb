DROP TRIGGER "User_sync_email" ON "User";
DROP FUNCTION "User_sync_email"();
ALTER TABLE "User" DROP COLUMN "emailAddress";
