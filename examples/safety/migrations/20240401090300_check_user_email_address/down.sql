ALTER TABLE "User" DROP CONSTRAINT "User_emailAddress_not_null";
